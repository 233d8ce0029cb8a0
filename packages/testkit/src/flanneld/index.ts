/**
 * Harness for interoperability tests against the real upstream `flanneld`
 * binary (spec: interop.md section 2): find the binary, start a private etcd
 * that both flanneld (inside network namespaces) and test code (in the test
 * process) can reach, create namespaces with TEST-NET underlay addresses, and
 * run flanneld inside them. Nothing here ever runs flanneld in the host
 * namespace; every namespace, process and directory is removed on cleanup.
 *
 * etcd listens on a loopback TCP port (for clients in the test process) and on
 * a unix socket (for flanneld inside namespaces: a path-bound socket is
 * reachable from any network namespace, so no host interface is touched).
 */
import { spawn, execFile, type ChildProcess } from 'node:child_process'
import { accessSync, constants as fsConstants, existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Etcd3 } from 'etcd3'

const execFileAsync = promisify(execFile)

/** Repository root (this file is packages/testkit/src/flanneld/index.ts). */
const REPO_ROOT = resolve(fileURLToPath(new URL('.', import.meta.url)), '../../../..')

/** Where a locally built flanneld is looked for when `FLANNELD_BIN` is unset. */
export const LOCAL_FLANNELD = join(REPO_ROOT, '.tmp', 'flanneld')

function isExecutable(path: string): boolean {
  try {
    accessSync(path, fsConstants.X_OK)
    return true
  } catch {
    return false
  }
}

/**
 * The flanneld binary to test against: `$FLANNELD_BIN` when set, else
 * `<repo>/.tmp/flanneld` when present, else undefined.
 */
export function findFlanneld(): string | undefined {
  const fromEnv = process.env.FLANNELD_BIN
  if (fromEnv !== undefined && fromEnv !== '') return isExecutable(fromEnv) ? fromEnv : undefined
  return isExecutable(LOCAL_FLANNELD) ? LOCAL_FLANNELD : undefined
}

/**
 * Why interop tests cannot run here, or undefined when they can (a flanneld
 * binary, root, `ip` and an etcd binary are all needed).
 */
export function interopSkipReason(): string | undefined {
  const env = process.env.FLANNELD_BIN
  if (findFlanneld() === undefined) {
    return env
      ? `FLANNELD_BIN=${env} is not an executable file`
      : `no flanneld binary (set FLANNELD_BIN or build one into ${LOCAL_FLANNELD})`
  }
  if (process.getuid?.() !== 0) return 'network namespaces need root'
  if (!existsSync('/usr/bin/etcd') && !process.env.ETCD_BIN)
    return 'no etcd binary at /usr/bin/etcd'
  return undefined
}

/** A short random prefix for namespace and device names of one test run (`fl` + 4 hex). */
export function runPrefix(): string {
  return `fl${randomBytes(2).toString('hex')}`
}

/** Runs a command and returns its stdout; rejects with stderr in the message on failure. */
export async function run(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await execFileAsync(cmd, [...args], { maxBuffer: 16 * 1024 * 1024 })
    return stdout
  } catch (err) {
    const e = err as { stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, {
      cause: err,
    })
  }
}

/** A free TCP port on 127.0.0.1 (bound and released; good enough for test setup). */
export async function freePort(): Promise<number> {
  return await new Promise((resolvePort, reject) => {
    const server = createServer()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address ? address.port : 0
      server.close(() => resolvePort(port))
    })
  })
}

async function sleep(ms: number): Promise<void> {
  await new Promise((r) => setTimeout(r, ms))
}

/** Waits for a child process to exit; resolves with its exit code (or signal name). */
function exited(child: ChildProcess): Promise<number | string> {
  if (child.exitCode !== null) return Promise.resolve(child.exitCode)
  if (child.signalCode !== null) return Promise.resolve(child.signalCode)
  return new Promise((r) => child.once('exit', (code, signal) => r(code ?? signal ?? -1)))
}

async function stopChild(child: ChildProcess, graceMs = 3000): Promise<number | string> {
  if (child.exitCode !== null || child.signalCode !== null) return exited(child)
  const done = exited(child)
  child.kill('SIGTERM')
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs)
  try {
    return await done
  } finally {
    clearTimeout(timer)
  }
}

// ---------------------------------------------------------------------------
// etcd

/** A private single-node etcd for interop tests. */
export interface InteropEtcd {
  /** Endpoint for clients in the test process, e.g. `http://127.0.0.1:41234`. */
  readonly clientUrl: string
  /** Endpoint for flanneld inside a namespace (`unix://<dir>/etcd.sock:1`). */
  readonly socketEndpoint: string
  /** The temp directory holding data and socket. */
  readonly dir: string
  /** A new etcd3 client for the test process; closed by {@link InteropEtcd.stop}. */
  connect(): Etcd3
  /** Stops etcd and removes its directory. */
  stop(): Promise<void>
}

/**
 * Starts `/usr/bin/etcd` (or `$ETCD_BIN`) on a free loopback port plus a unix
 * socket in a fresh temp directory, and waits until it is healthy.
 */
export async function startInteropEtcd(): Promise<InteropEtcd> {
  const dir = await mkdtemp(join(tmpdir(), 'fl-interop-etcd-'))
  const clientPort = await freePort()
  const peerPort = await freePort()
  const clientUrl = `http://127.0.0.1:${clientPort}`
  const peerUrl = `http://127.0.0.1:${peerPort}`
  const child = spawn(
    process.env.ETCD_BIN ?? '/usr/bin/etcd',
    [
      '--name=interop',
      `--data-dir=${join(dir, 'data')}`,
      // etcd 3.4 wants unix URLs as host:port; the socket file is `etcd.sock:1` in cwd.
      `--listen-client-urls=${clientUrl},unix://etcd.sock:1`,
      `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`,
      `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=interop=${peerUrl}`,
      '--initial-cluster-state=new',
      '--logger=zap',
      '--log-outputs=stderr',
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  )
  let log = ''
  child.stderr?.on('data', (chunk: Buffer) => {
    if (log.length < 1_000_000) log += chunk.toString()
  })
  const clients: Etcd3[] = []
  const stop = async (): Promise<void> => {
    for (const c of clients) c.close()
    await stopChild(child)
    await rm(dir, { recursive: true, force: true })
  }
  try {
    const deadline = Date.now() + 15_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`etcd exited early:\n${log.slice(-2000)}`)
      try {
        const res = await fetch(`${clientUrl}/health`)
        if (res.ok && (await res.text()).includes('true')) break
      } catch {
        // not listening yet
      }
      if (Date.now() > deadline) throw new Error(`etcd not healthy in 15 s:\n${log.slice(-2000)}`)
      await sleep(50)
    }
  } catch (err) {
    await stop()
    throw err
  }
  const connect = (): Etcd3 => {
    const c = new Etcd3({ hosts: clientUrl })
    clients.push(c)
    return c
  }
  return { clientUrl, socketEndpoint: `unix://${join(dir, 'etcd.sock:1')}`, dir, connect, stop }
}

// ---------------------------------------------------------------------------
// Network namespaces

/** A network namespace created by a test; removed by {@link Netns.destroy}. */
export class Netns {
  private constructor(readonly name: string) {}

  /** Creates namespace `name` with loopback up. */
  static async create(name: string): Promise<Netns> {
    if (name.length > 15 || !/^fl[0-9a-z-]+$/.test(name)) {
      throw new Error(`namespace name ${name} must start with fl and be at most 15 characters`)
    }
    await run('ip', ['netns', 'add', name])
    const ns = new Netns(name)
    try {
      await ns.ip('link', 'set', 'lo', 'up')
    } catch (err) {
      await ns.destroy()
      throw err
    }
    return ns
  }

  /** Runs `ip -n <ns> ...args` and returns stdout. */
  async ip(...args: string[]): Promise<string> {
    return run('ip', ['-n', this.name, ...args])
  }

  /** Runs a command inside the namespace (`ip netns exec`). */
  async exec(cmd: string, ...args: string[]): Promise<string> {
    return run('ip', ['netns', 'exec', this.name, cmd, ...args])
  }

  /**
   * Adds a bridge `dev` carrying `cidr` (e.g. `192.0.2.11/24`), up: a stand-in
   * external interface for backends that need no peer traffic (alloc).
   */
  async addBridge(dev: string, cidr: string, mtu = 1500): Promise<void> {
    await this.ip('link', 'add', dev, 'type', 'bridge')
    await this.ip('link', 'set', dev, 'mtu', String(mtu))
    await this.ip('addr', 'add', cidr, 'dev', dev)
    await this.ip('link', 'set', dev, 'up')
  }

  /** Removes the namespace (and with it every device inside). Never throws. */
  async destroy(): Promise<void> {
    await run('ip', ['netns', 'del', this.name]).catch(() => undefined)
  }
}

/**
 * Builds a switch namespace `<prefix>-sw` with bridge `br0` and `count` hosts
 * `<prefix>-h<n>`, each joined to the bridge by a veth whose host end is
 * `eth0` with `192.0.2.<n>/24`. Every namespace is pushed onto `created` as
 * soon as it exists, so the caller's teardown removes them even when a later
 * step fails. Returns `[switch, host1, host2, ...]`.
 */
export async function bridgedHosts(
  prefix: string,
  count: number,
  created: Netns[],
): Promise<Netns[]> {
  const sw = await Netns.create(`${prefix}-sw`)
  created.push(sw)
  await sw.ip('link', 'add', 'br0', 'type', 'bridge')
  await sw.ip('link', 'set', 'br0', 'up')
  const all = [sw]
  for (let n = 1; n <= count; n++) {
    const ns = await Netns.create(`${prefix}-h${n}`)
    created.push(ns)
    all.push(ns)
    const port = `${prefix}p${n}`
    await sw.ip('link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns.name)
    await sw.ip('link', 'set', port, 'master', 'br0', 'up')
    await ns.ip('addr', 'add', `192.0.2.${n}/24`, 'dev', 'eth0')
    await ns.ip('link', 'set', 'eth0', 'up')
  }
  return all
}

/**
 * Joins two namespaces with a veth pair created directly inside them (never
 * in the host namespace), addresses them and brings both ends up.
 */
export async function linkNamespaces(
  a: { ns: Netns; dev: string; cidr: string },
  b: { ns: Netns; dev: string; cidr: string },
): Promise<void> {
  await a.ns.ip('link', 'add', a.dev, 'type', 'veth', 'peer', 'name', b.dev, 'netns', b.ns.name)
  for (const side of [a, b]) {
    await side.ns.ip('addr', 'add', side.cidr, 'dev', side.dev)
    await side.ns.ip('link', 'set', side.dev, 'up')
  }
}

// ---------------------------------------------------------------------------
// flanneld

/** What every way of running flanneld shares. */
interface FlanneldCommonOptions {
  /**
   * Namespace to run in (required: flanneld never runs in the host namespace):
   * a {@link Netns}, or any namespace a test built, by name.
   */
  readonly netns: Pick<Netns, 'name'>
  /**
   * Environment variables on top of `PATH` (flanneld gets nothing else from
   * the test process), e.g. `NODE_NAME`, `POD_NAME`, `POD_NAMESPACE` in kube
   * mode or `FLANNELD_<FLAG>` values.
   */
  readonly env?: Readonly<Record<string, string>>
  /** Binary; default {@link findFlanneld}. */
  readonly bin?: string
}

/** flanneld in etcd mode: the etcd, interface and subnet-file flags are built from these. */
export interface FlanneldEtcdOptions extends FlanneldCommonOptions {
  /** etcd endpoint reachable from the namespace (`InteropEtcd.socketEndpoint`). */
  readonly etcdEndpoint: string
  /** `--etcd-prefix` (default `/coreos.com/network`). */
  readonly etcdPrefix?: string
  /** `--iface`. */
  readonly iface: string
  /** `--subnet-file`. */
  readonly subnetFile: string
  /** `--public-ip`, when it should differ from the interface address. */
  readonly publicIp?: string
  /** `--ip-masq` (default false). */
  readonly ipMasq?: boolean
  /** Further flags, e.g. `--iptables-forward-rules=false`. */
  readonly extraArgs?: readonly string[]
}

/**
 * flanneld with exactly this command line (nothing is added), e.g. kube mode:
 * `['--kube-subnet-mgr', '--kubeconfig-file=...', '--net-config-path=...', ...]`
 * with `env: { NODE_NAME: ... }`.
 */
export interface FlanneldArgsOptions extends FlanneldCommonOptions {
  /** Every argument after the binary. */
  readonly args: readonly string[]
}

/** How to run one flanneld: etcd mode from typed options, or any command line. */
export type FlanneldOptions = FlanneldEtcdOptions | FlanneldArgsOptions

function flanneldArgs(opts: FlanneldOptions): string[] {
  if ('args' in opts) return [...opts.args]
  return [
    `--etcd-endpoints=${opts.etcdEndpoint}`,
    `--etcd-prefix=${opts.etcdPrefix ?? '/coreos.com/network'}`,
    `--iface=${opts.iface}`,
    `--subnet-file=${opts.subnetFile}`,
    `--ip-masq=${opts.ipMasq === true ? 'true' : 'false'}`,
    ...(opts.publicIp !== undefined ? [`--public-ip=${opts.publicIp}`] : []),
    ...(opts.extraArgs ?? []),
  ]
}

/** A running (or finished) flanneld with its log. */
export class Flanneld {
  private logText = ''
  private readonly waiters = new Set<() => void>()
  private readonly exit: Promise<number | string>
  private closed: number | string | null = null

  private constructor(private readonly child: ChildProcess) {
    const onData = (chunk: Buffer): void => {
      if (this.logText.length < 4_000_000) this.logText += chunk.toString()
      for (const wake of this.waiters) wake()
    }
    child.stdout?.on('data', onData)
    child.stderr?.on('data', onData)
    // 'close' (not 'exit'): fires after stdout/stderr are drained, so the log is complete.
    this.exit = new Promise((resolveExit) =>
      child.once('close', (code, signal) => {
        this.closed = code ?? signal ?? -1
        resolveExit(this.closed)
        for (const wake of this.waiters) wake()
      }),
    )
  }

  /**
   * Starts flanneld inside `opts.netns`: etcd mode from {@link FlanneldEtcdOptions},
   * or exactly `opts.args` ({@link FlanneldArgsOptions}); `opts.env` is added to `PATH`.
   */
  static start(opts: FlanneldOptions): Flanneld {
    const bin = opts.bin ?? findFlanneld()
    if (bin === undefined) throw new Error('no flanneld binary')
    // `ip netns exec` execs the binary, so the child's pid is flanneld's own.
    const child = spawn('ip', ['netns', 'exec', opts.netns.name, bin, ...flanneldArgs(opts)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin', ...opts.env },
    })
    return new Flanneld(child)
  }

  /** flanneld's process id (`ip netns exec` execs the binary), e.g. to pause it. */
  get pid(): number | undefined {
    return this.child.pid
  }

  /** Everything flanneld printed so far. */
  get log(): string {
    return this.logText
  }

  /** The exit code (or signal) once it has exited and its output is read. */
  get exitCode(): number | string | null {
    return this.closed
  }

  /**
   * Waits until a log line matches `pattern` and returns the match; rejects
   * when flanneld exits first or after `timeoutMs`.
   */
  async waitForLog(pattern: RegExp, timeoutMs = 10_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const m = this.logText.match(pattern)
      if (m) return m
      if (this.exitCode !== null) {
        throw new Error(`flanneld exited (${this.exitCode}) before ${pattern}:\n${this.tail()}`)
      }
      const left = deadline - Date.now()
      if (left <= 0) throw new Error(`timed out waiting for ${pattern}:\n${this.tail()}`)
      const waiters = this.waiters
      await new Promise<void>((wake) => {
        const done = (): void => {
          clearTimeout(timer)
          waiters.delete(done)
          wake()
        }
        const timer = setTimeout(done, Math.min(left, 500))
        waiters.add(done)
      })
    }
  }

  /** Waits for flanneld to exit by itself; returns its exit code or signal. */
  async waitForExit(timeoutMs = 10_000): Promise<number | string> {
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new Error(`flanneld still running:\n${this.tail()}`)),
        timeoutMs,
      )
    })
    try {
      return await Promise.race([this.exit, timeout])
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Stops flanneld (SIGTERM, then SIGKILL after `graceMs`) and returns its
   * exit status. The grace is short because flanneld v0.28.10 often hangs
   * after SIGTERM at `Waiting for all goroutines to exit`.
   */
  async stop(graceMs = 1000): Promise<number | string> {
    await stopChild(this.child, graceMs)
    return this.exit
  }

  private tail(): string {
    return this.logText.split('\n').slice(-25).join('\n')
  }
}

/** The log line flanneld prints with the effective IPv4 range (`Picking subnet in range A ... B`). */
export const PICKING_RANGE = /Picking subnet in range (\S+) \.\.\. (\S+)/
/** The log line with the effective IPv6 range. */
export const PICKING_RANGE6 = /Picking ipv6 subnet in range (\S+) \.\.\. (\S+)/
/** The log line of a config that could not be fetched or validated; group 1 is the error text. */
export const CONFIG_ERROR = /Couldn't fetch network config: (.*)$/m
/** The log line of a new allocation; groups: IPv4 subnet, IPv6 subnet. */
export const ALLOCATED = /Allocated lease \(ip: (\S+) ipv6: (\S+)\)/
/** The log line after subnet.env was written. */
export const SUBNET_FILE_WRITTEN = /Wrote subnet file to /

/** The flanneld version string (`flanneld --version`). */
export async function flanneldVersion(bin = findFlanneld()): Promise<string> {
  if (bin === undefined) throw new Error('no flanneld binary')
  const { stdout, stderr } = await execFileAsync(bin, ['--version'])
  return `${stdout}${stderr}`.trim()
}

/** One subnet key as stored in etcd, with its etcd lease. */
export interface StoredLease {
  /** Full key, e.g. `/coreos.com/network/subnets/10.244.95.0-24`. */
  readonly key: string
  /** The value bytes as text. */
  readonly value: string
  /** etcd lease id (decimal string), `'0'` when the key has none. */
  readonly leaseId: string
  /** The lease's granted TTL in seconds (`-1` when the key has no lease). */
  readonly grantedTTL: number
  /** Keys attached to that lease. */
  readonly leaseKeys: readonly string[]
}

/** Reads every key under `<prefix>/subnets/` with its etcd lease (`etcdctl lease timetolive --keys`). */
export async function dumpSubnets(client: Etcd3, prefix: string): Promise<StoredLease[]> {
  const res = await client.getAll().prefix(`${prefix}/subnets/`).exec()
  const out: StoredLease[] = []
  for (const kv of res.kvs) {
    const leaseId = String(kv.lease)
    let grantedTTL = -1
    let leaseKeys: string[] = []
    if (leaseId !== '0') {
      const ttl = await client.leaseClient.leaseTimeToLive({ ID: leaseId, keys: true })
      grantedTTL = Number(ttl.grantedTTL)
      leaseKeys = ttl.keys.map((k) => Buffer.from(k).toString())
    }
    out.push({ key: kv.key.toString(), value: kv.value.toString(), leaseId, grantedTTL, leaseKeys })
  }
  return out
}

/** Kernel state of one VXLAN device, in a form that can be compared between implementations. */
export interface VxlanState {
  readonly mtu: number
  readonly operstate: string
  readonly mac: string
  /** `vxlan id 1 local 192.0.2.11 dev <ext> dstport 8472 nolearning` and further flags, as `ip -d` prints. */
  readonly vxlan: {
    readonly id: number
    readonly local: string | undefined
    readonly dev: string | undefined
    readonly port: number
    readonly learning: boolean
    readonly gbp: boolean
  }
  /** `net.ipv6.conf.<dev>.accept_ra`. */
  readonly acceptRa: string
  /** Addresses with prefix, sorted. */
  readonly addresses: readonly string[]
  /** `ip neigh show dev <dev>`: `<dst> lladdr <mac> <STATE>` lines, sorted. */
  readonly neighbours: readonly string[]
  /** `bridge fdb show dev <dev>`: `<mac> dst <ip> <flags> <state>` lines, sorted. */
  readonly fdb: readonly string[]
  /** `ip route show dev <dev>`: `<dst> via <gw> <flags>` lines, sorted. */
  readonly routes: readonly string[]
}

interface IpLinkJson {
  mtu: number
  operstate: string
  address: string
  linkinfo?: { info_data?: Record<string, unknown> }
}

/** Reads a VXLAN device's state inside `ns` (with `ip -j`, `bridge -j` and procfs). */
export async function readVxlanState(ns: Netns, dev: string): Promise<VxlanState> {
  const [link] = JSON.parse(await ns.ip('-d', '-j', 'link', 'show', 'dev', dev)) as IpLinkJson[]
  if (link === undefined) throw new Error(`no device ${dev} in ${ns.name}`)
  const data = link.linkinfo?.info_data ?? {}
  const addrs = JSON.parse(await ns.ip('-j', 'addr', 'show', 'dev', dev)) as {
    addr_info: { local: string; prefixlen: number }[]
  }[]
  const neigh = JSON.parse(await ns.ip('-j', 'neigh', 'show', 'dev', dev)) as {
    dst: string
    lladdr?: string
    state?: string[]
  }[]
  const fdb = JSON.parse(
    await run('ip', ['netns', 'exec', ns.name, 'bridge', '-j', 'fdb', 'show', 'dev', dev]),
  ) as {
    mac: string
    dst?: string
    flags?: string[]
    state?: string
  }[]
  const routes = JSON.parse(await ns.ip('-j', 'route', 'show', 'dev', dev)) as {
    dst: string
    gateway?: string
    flags?: string[]
  }[]
  const acceptRa = (await ns.exec('cat', `/proc/sys/net/ipv6/conf/${dev}/accept_ra`)).trim()
  return {
    mtu: link.mtu,
    operstate: link.operstate,
    mac: link.address,
    vxlan: {
      id: Number(data.id),
      local: data.local as string | undefined,
      dev: data.link as string | undefined,
      port: Number(data.port),
      learning: data.learning === true,
      gbp: data.gbp === true,
    },
    acceptRa,
    addresses: addrs
      .flatMap((a) => a.addr_info)
      .map((i) => `${i.local}/${i.prefixlen}`)
      .sort(),
    neighbours: neigh
      .map((n) => `${n.dst} lladdr ${n.lladdr ?? '-'} ${(n.state ?? []).join(',')}`)
      .sort(),
    fdb: fdb
      .filter((e) => e.dst !== undefined)
      .map((e) => `${e.mac} dst ${e.dst} ${(e.flags ?? []).join(',')} ${e.state ?? ''}`.trim())
      .sort(),
    routes: routes
      .map((r) =>
        `${r.dst}${r.gateway ? ` via ${r.gateway}` : ''} ${(r.flags ?? []).join(',')}`.trim(),
      )
      .sort(),
  }
}

export { fixedSubnetRegistry, type FixedSubnetRegistry } from './fixed-registry.js'
export {
  startMixedCluster,
  type HostSubnets,
  type MixedCluster,
  type MixedClusterOptions,
} from './mixed.js'
