/**
 * Hosts as network namespaces for end-to-end tests: a "switch" namespace with
 * a bridge on a TEST-NET underlay, N host namespaces joined to it by veth
 * pairs, helpers to run commands inside them, and readers for the kernel state
 * (`ip -j`, `bridge -j`). Names carry a per-run prefix (`fk` + 4 hex); every
 * namespace is removed by `destroy()`, and {@link sweepStaleNamespaces}
 * removes leftovers of crashed runs.
 *
 * @packageDocumentation
 */
import { randomBytes } from 'node:crypto'
import { mkdir, readdir, readFile, rm, writeFile } from 'node:fs/promises'
import { execCommand, spawnProcess, type ManagedProcess } from '../proc/index.js'

/** Namespace-name family of this kit: `fk` + 4 hex digits + a role suffix. */
const FAMILY = /^fk[0-9a-f]{4}(sw|h\d+)$/
/** Where each run records its owner pid, so a sweep spares runs that are alive. */
const OWNER_DIR = '/run/flannel-testkit'

/** Why namespace tests cannot run here, or undefined when they can. */
export async function netnsSkipReason(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root)'
  try {
    await execCommand('ip', ['netns', 'list'])
    await execCommand('bridge', ['-V'])
  } catch {
    return 'iproute2 (ip, bridge) is missing'
  }
  return undefined
}

/** A fresh run prefix: `fk` + 4 random hex digits (device names stay within 15 characters). */
export function netnsPrefix(): string {
  return `fk${randomBytes(2).toString('hex')}`
}

/** Runs a command inside a namespace and returns stdout. */
export function nsExec(ns: string, command: string, args: readonly string[] = []): Promise<string> {
  return execCommand('ip', ['netns', 'exec', ns, command, ...args])
}

/** Starts a long-running command inside a namespace (killed on stop, teardown and exit). */
export function nsSpawn(
  ns: string,
  command: string,
  args: readonly string[] = [],
  options: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {},
): ManagedProcess {
  return spawnProcess('ip', ['netns', 'exec', ns, command, ...args], options)
}

/** One host of a {@link Topology}. */
export interface NetnsHost {
  /** Namespace name, e.g. `fk1a2bh1`. */
  readonly ns: string
  /** 1-based host number. */
  readonly n: number
  /** Underlay interface name inside the host (`eth0`). */
  readonly iface: string
  /** Underlay address, e.g. `192.0.2.1`. */
  readonly underlayIp: string
  /** Runs a command in this host. */
  exec(command: string, args?: readonly string[]): Promise<string>
  /** Starts a long-running command in this host. */
  spawn(
    command: string,
    args?: readonly string[],
    options?: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string },
  ): ManagedProcess
  /**
   * Puts a pod address on a bridge device (`cni0` by default; the kernel here
   * has no dummy type), e.g. `10.244.3.1/24`.
   */
  addPodAddress(cidr: string, device?: string): Promise<void>
}

/** Options of {@link createTopology}. */
export interface TopologyOptions {
  /** Number of hosts (default 3). */
  readonly hosts?: number
  /** Run prefix (default {@link netnsPrefix}). */
  readonly prefix?: string
  /** First three octets of the /24 underlay (default `192.0.2`, TEST-NET-1). */
  readonly underlay?: string
  /** Also give the underlay IPv6 (`2001:db8::<n>/64`, documentation range; switch `2001:db8::fe`). */
  readonly ipv6?: boolean
}

/** Hosts joined by a switch namespace; `destroy()` removes everything. */
export interface Topology {
  /** The run prefix. */
  readonly prefix: string
  /** Switch namespace, holding bridge `br0` with {@link Topology.switchIp}. */
  readonly switchNs: string
  /** Address of the switch bridge (`<underlay>.254`), e.g. for etcd. */
  readonly switchIp: string
  /** The hosts, `hosts[0]` is host 1 (`<underlay>.1`). */
  readonly hosts: readonly NetnsHost[]
  /** Adds one more host (e.g. a host joining later). */
  addHost(): Promise<NetnsHost>
  /** Removes a host's namespace (everything in it goes with it). */
  removeHost(host: NetnsHost): Promise<void>
  /** Stops processes started through the hosts and removes every namespace. Idempotent. */
  destroy(): Promise<void>
}

/**
 * Builds the switch namespace and `hosts` host namespaces. On failure
 * everything built so far is removed before the error is thrown.
 */
export async function createTopology(options: TopologyOptions = {}): Promise<Topology> {
  const prefix = options.prefix ?? netnsPrefix()
  if (!/^[a-z][a-z0-9]{1,9}$/.test(prefix)) throw new Error(`bad namespace prefix ${prefix}`)
  const underlay = options.underlay ?? '192.0.2'
  const switchNs = `${prefix}sw`
  const switchIp = `${underlay}.254`
  const created: string[] = []
  const processes: ManagedProcess[] = []
  const hosts: NetnsHost[] = []
  let nextHost = 1
  let destroyed = false

  const addNs = async (name: string): Promise<void> => {
    await execCommand('ip', ['netns', 'add', name])
    created.push(name)
    await execCommand('ip', ['-n', name, 'link', 'set', 'lo', 'up'])
  }
  const destroy = async (): Promise<void> => {
    if (destroyed) return
    destroyed = true
    await Promise.all(processes.map((p) => p.stop('SIGTERM', 2000).catch(() => undefined)))
    for (const name of created.splice(0).reverse()) {
      await execCommand('ip', ['netns', 'del', name]).catch(() => undefined)
    }
    await rm(`${OWNER_DIR}/${prefix}`, { force: true }).catch(() => undefined)
  }

  const addHost = async (): Promise<NetnsHost> => {
    const n = nextHost++
    if (n > 250) throw new Error('at most 250 hosts per topology')
    const ns = `${prefix}h${n}`
    const port = `${prefix}p${n}`
    const underlayIp = `${underlay}.${n}`
    await addNs(ns)
    // Both veth ends are created inside namespaces: nothing appears in the host's own namespace.
    await execCommand('ip', [
      '-n',
      switchNs,
      'link',
      'add',
      port,
      'type',
      'veth',
      'peer',
      'name',
      'eth0',
      'netns',
      ns,
    ])
    await execCommand('ip', ['-n', switchNs, 'link', 'set', port, 'master', 'br0', 'up'])
    await execCommand('ip', ['-n', ns, 'addr', 'add', `${underlayIp}/24`, 'dev', 'eth0'])
    await execCommand('ip', ['-n', ns, 'link', 'set', 'eth0', 'up'])
    await execCommand('ip', ['-n', ns, 'route', 'add', 'default', 'via', switchIp])
    if (options.ipv6) {
      await execCommand('ip', [
        '-n',
        ns,
        'addr',
        'add',
        `2001:db8::${n.toString(16)}/64`,
        'dev',
        'eth0',
        'nodad',
      ])
      await nsExec(ns, 'sysctl', ['-qw', 'net.ipv6.conf.all.forwarding=1'])
    }
    await nsExec(ns, 'sysctl', ['-qw', 'net.ipv4.ip_forward=1'])
    const host: NetnsHost = {
      ns,
      n,
      iface: 'eth0',
      underlayIp,
      exec: (command, args = []) => nsExec(ns, command, args),
      spawn: (command, args = [], opts = {}) => {
        const p = nsSpawn(ns, command, args, opts)
        processes.push(p)
        return p
      },
      addPodAddress: async (cidr, device = 'cni0') => {
        const existing = await execCommand('ip', ['-n', ns, '-j', 'link', 'show']).then(
          (t) => JSON.parse(t) as { ifname: string }[],
        )
        if (!existing.some((l) => l.ifname === device)) {
          await execCommand('ip', ['-n', ns, 'link', 'add', device, 'type', 'bridge'])
        }
        await execCommand('ip', ['-n', ns, 'addr', 'replace', cidr, 'dev', device])
        await execCommand('ip', ['-n', ns, 'link', 'set', device, 'up'])
      },
    }
    hosts.push(host)
    return host
  }

  try {
    await mkdir(OWNER_DIR, { recursive: true })
    await writeFile(`${OWNER_DIR}/${prefix}`, String(process.pid))
    await addNs(switchNs)
    await execCommand('ip', ['-n', switchNs, 'link', 'add', 'br0', 'type', 'bridge'])
    await execCommand('ip', ['-n', switchNs, 'addr', 'add', `${switchIp}/24`, 'dev', 'br0'])
    if (options.ipv6) {
      await execCommand('ip', [
        '-n',
        switchNs,
        'addr',
        'add',
        '2001:db8::fe/64',
        'dev',
        'br0',
        'nodad',
      ])
    }
    await execCommand('ip', ['-n', switchNs, 'link', 'set', 'br0', 'up'])
    for (let i = 0; i < (options.hosts ?? 3); i++) await addHost()
  } catch (error) {
    await destroy()
    throw error
  }
  return {
    prefix,
    switchNs,
    switchIp,
    hosts,
    addHost,
    async removeHost(host) {
      const i = created.indexOf(host.ns)
      if (i >= 0) created.splice(i, 1)
      const j = hosts.indexOf(host)
      if (j >= 0) hosts.splice(j, 1)
      await execCommand('ip', ['netns', 'del', host.ns]).catch(() => undefined)
    },
    destroy,
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/**
 * Removes namespaces of this kit's family (`fk????sw`, `fk????h<n>`) left by
 * runs whose process is gone (crashed or killed). Returns the names removed.
 */
export async function sweepStaleNamespaces(): Promise<string[]> {
  const list = await execCommand('ip', ['netns', 'list']).catch(() => '')
  const names = list
    .split('\n')
    .map((l) => l.split(' ')[0] ?? '')
    .filter((n) => FAMILY.test(n))
  const removed: string[] = []
  for (const name of names) {
    const prefix = name.slice(0, 6)
    const owner = await readFile(`${OWNER_DIR}/${prefix}`, 'utf8').catch(() => '')
    const pid = Number(owner)
    if (pid > 0 && alive(pid)) continue
    await execCommand('ip', ['netns', 'del', name]).catch(() => undefined)
    removed.push(name)
  }
  for (const file of await readdir(OWNER_DIR).catch(() => [] as string[])) {
    const pid = Number(await readFile(`${OWNER_DIR}/${file}`, 'utf8').catch(() => ''))
    if (!(pid > 0 && alive(pid))) await rm(`${OWNER_DIR}/${file}`, { force: true })
  }
  return removed
}

/** `ip -j link` entry (the fields the tests read). */
export interface IpLink {
  readonly ifname: string
  readonly ifindex: number
  readonly mtu: number
  readonly address?: string
  readonly operstate?: string
  readonly flags?: string[]
  readonly linkinfo?: { readonly info_kind?: string; readonly info_data?: Record<string, unknown> }
}

/** `ip -j addr` entry, flattened to one row per address. */
export interface IpAddress {
  readonly ifname: string
  readonly family: string
  readonly local: string
  readonly prefixlen: number
}

/** `ip -j route` entry. */
export interface IpRoute {
  readonly dst: string
  readonly gateway?: string
  readonly dev?: string
  readonly protocol?: string
  readonly flags?: string[]
}

/** `ip -j neigh` entry. */
export interface IpNeigh {
  readonly dst: string
  readonly dev: string
  readonly lladdr?: string
  readonly state?: string[]
}

/** `bridge -j fdb` entry. */
export interface BridgeFdb {
  readonly mac: string
  readonly ifname: string
  readonly dst?: string
  readonly flags?: string[]
  readonly state?: string
}

async function json<T>(ns: string, command: string, args: readonly string[]): Promise<T[]> {
  const text = await nsExec(ns, command, args)
  return text.trim() === '' ? [] : (JSON.parse(text) as T[])
}

/** Links of a namespace (`ip -d -j link show [dev]`). */
export function readLinks(ns: string, dev?: string): Promise<IpLink[]> {
  return json<IpLink>(ns, 'ip', ['-d', '-j', 'link', 'show', ...(dev ? ['dev', dev] : [])])
}

/** Addresses of a namespace, one row per address (`ip -j addr show [dev]`). */
export async function readAddresses(ns: string, dev?: string): Promise<IpAddress[]> {
  const rows = await json<{
    ifname: string
    addr_info?: { family: string; local: string; prefixlen: number }[]
  }>(ns, 'ip', ['-j', 'addr', 'show', ...(dev ? ['dev', dev] : [])])
  return rows.flatMap((r) =>
    (r.addr_info ?? []).map((a) => ({
      ifname: r.ifname,
      family: a.family,
      local: a.local,
      prefixlen: a.prefixlen,
    })),
  )
}

/** IPv4 (or `-6`) routes of the main table (`ip -j route show [dev]`). */
export function readRoutes(
  ns: string,
  options: { dev?: string; v6?: boolean } = {},
): Promise<IpRoute[]> {
  return json<IpRoute>(ns, 'ip', [
    ...(options.v6 ? ['-6'] : []),
    '-j',
    'route',
    'show',
    ...(options.dev ? ['dev', options.dev] : []),
  ]).then((rows) => (options.dev ? rows.map((r) => ({ ...r, dev: options.dev })) : rows))
}

/** Neighbour entries (`ip -j neigh show [dev]`). */
export function readNeighbours(ns: string, dev?: string): Promise<IpNeigh[]> {
  return json<IpNeigh>(ns, 'ip', ['-j', 'neigh', 'show', ...(dev ? ['dev', dev] : [])]).then(
    (rows) => (dev ? rows.map((r) => ({ ...r, dev })) : rows),
  )
}

/** Bridge FDB entries (`bridge -j fdb show [dev]`). */
export function readFdb(ns: string, dev?: string): Promise<BridgeFdb[]> {
  return json<BridgeFdb>(ns, 'bridge', ['-j', 'fdb', 'show', ...(dev ? ['dev', dev] : [])])
}

/** Polls `probe` every `intervalMs` until it returns a truthy value or `timeoutMs` passes (then the last value). */
export async function waitUntil<T>(
  probe: () => Promise<T>,
  timeoutMs = 5000,
  intervalMs = 50,
): Promise<T> {
  const deadline = Date.now() + timeoutMs
  for (;;) {
    let value: T | undefined
    try {
      value = await probe()
    } catch {
      value = undefined
    }
    if (value || Date.now() > deadline) return value as T
    await new Promise((r) => setTimeout(r, intervalMs))
  }
}

export {
  AGENT_CLI,
  parseEnvFile,
  startCluster,
  type Cluster,
  type ClusterAgent,
  type ClusterOptions,
} from './cluster.js'
export { podAddress, pingMatrix, tcpMatrix } from './traffic.js'
