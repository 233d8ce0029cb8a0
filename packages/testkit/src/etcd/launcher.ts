import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { rmSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { Etcd3, type IOptions } from 'etcd3'
import { etcdBinary, etcdctlBinary, etcdMissingReason } from './available.js'
import type { TestCertificates } from './certs.js'
import { pauseProcess, resumeProcess, spawnReaper, type Reaper } from '../proc/index.js'

const execFileAsync = promisify(execFile)

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** Address etcd listens on and advertises (default `127.0.0.1`). */
  readonly host?: string
  /**
   * Run etcd inside this network namespace (`ip netns exec <netns> etcd ...`),
   * e.g. on a bridge address there. The namespace must exist; `host` should be
   * an address inside it.
   */
  readonly netns?: string
  /** Client port (default: a free one). */
  readonly clientPort?: number
  /** Peer port (default: a free one). */
  readonly peerPort?: number
  /** Serve clients over TLS with these certificates (from `generateTestCertificates`). */
  readonly tls?: {
    readonly certificates: TestCertificates
    /** Require client certificates signed by the CA (etcd `--client-cert-auth`). */
    readonly clientCertAuth?: boolean
  }
  /** Member name (default `flannel-test`). */
  readonly name?: string
  /**
   * `--initial-cluster` for a member of a multi-member cluster (`name=peerUrl,...`,
   * with `clientPort` and `peerPort` given); default: this member alone.
   * See `startEtcdCluster`.
   */
  readonly initialCluster?: string
  /** More etcd flags. */
  readonly extraArgs?: readonly string[]
  /** How long to wait until etcd is healthy (default 20 s). */
  readonly startTimeoutMs?: number
}

/** A single-node etcd started by {@link startEtcd}. */
export interface EtcdServer {
  /** Client endpoints, e.g. `['http://127.0.0.1:41234']`. */
  readonly endpoints: string[]
  /** The temp directory (data dir is `<dir>/data`); removed by {@link EtcdServer.stop}. */
  readonly dir: string
  /** The etcd process id while it runs. */
  readonly pid: number | undefined
  /** True while the process runs (paused counts as running). */
  readonly running: boolean
  /** A new etcd3 client for these endpoints (TLS set up when used); closed by `stop()`. */
  connect(options?: Partial<IOptions>): Etcd3
  /** Runs `etcdctl --endpoints=... <args>` (in the namespace, with the TLS files) and returns stdout. */
  etcdctl(...args: string[]): Promise<string>
  /**
   * Freezes the process (SIGSTOP): connections stay open but nothing answers.
   * Resolves once every thread of etcd is stopped: the kernel stops a
   * multi-threaded process only when one of its threads next runs, so on a
   * busy machine etcd may still answer for a while after the signal is sent.
   */
  pause(): Promise<void>
  /** Continues a paused process (SIGCONT). */
  resume(): void
  /** Kills the process (SIGKILL) and keeps the data dir, to simulate an outage. */
  kill(): Promise<void>
  /** Starts etcd again on the same ports and data dir (after `kill()`), and waits until healthy. */
  restart(): Promise<void>
  /** Kills etcd, closes clients from `connect()` and removes the directory. Idempotent. */
  stop(): Promise<void>
  /** The last part of etcd's log (stderr), for failure messages. */
  log(): string
}

/** Every server not yet stopped, killed synchronously when the test process exits. */
const live = new Set<{ child(): ChildProcess | undefined; dir: string }>()
let exitHookInstalled = false

function installExitHook(): void {
  if (exitHookInstalled) return
  exitHookInstalled = true
  process.once('exit', () => {
    for (const server of live) {
      try {
        server.child()?.kill('SIGKILL')
      } catch {
        // already gone
      }
      rmSync(server.dir, { recursive: true, force: true })
    }
  })
}

/** A TCP port on 127.0.0.1 that is free right now. */
export async function freeLoopbackPort(): Promise<number> {
  return await new Promise((resolve, reject) => {
    const server = createServer()
    server.unref()
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => {
      const address = server.address()
      const port = typeof address === 'object' && address !== null ? address.port : 0
      server.close(() => resolve(port))
    })
  })
}

function randomHighPort(): number {
  return 20000 + Math.floor(Math.random() * 40000)
}

const GO_ARCH: Record<string, string> = { x64: 'amd64', arm64: 'arm64', ia32: '386', arm: 'arm' }

function etcdEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env }
  // etcd 3.4 refuses to start on architectures other than amd64/arm64 unless told.
  if (process.arch !== 'x64' && process.arch !== 'arm64') {
    env.ETCD_UNSUPPORTED_ARCH = GO_ARCH[process.arch] ?? process.arch
  }
  // Never pick up an operator's etcd configuration from the environment.
  for (const key of Object.keys(env))
    if (key.startsWith('ETCD_') && key !== 'ETCD_UNSUPPORTED_ARCH' && key !== 'ETCD_BIN')
      delete env[key]
  return env
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

function exited(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve()
  return new Promise((resolve) => child.once('exit', () => resolve()))
}

/**
 * Starts a private single-node etcd (Debian's `etcd-server`, or `$ETCD_BIN`)
 * on free ports with a fresh temp data dir and waits until it serves clients.
 * The process is killed and the directory removed by `stop()`, and also when
 * the test process exits.
 *
 * @example
 * ```ts
 * const etcd = await startEtcd()
 * try {
 *   const client = etcd.connect()
 *   await client.put('/k').value('v')
 * } finally {
 *   await etcd.stop()
 * }
 * ```
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<EtcdServer> {
  const missing = etcdMissingReason()
  if (missing !== undefined) throw new Error(missing)
  installExitHook()
  const host = options.host ?? '127.0.0.1'
  const scheme = options.tls ? 'https' : 'http'
  const dir = await mkdtemp(join(tmpdir(), 'fl-etcd-'))
  const dataDir = join(dir, 'data')
  const startTimeoutMs = options.startTimeoutMs ?? 20_000

  const name = options.name ?? 'flannel-test'
  let clientPort = 0
  let peerPort = 0
  let child: ChildProcess | undefined
  let watchdog: Reaper | undefined
  let logText = ''
  let paused = false
  const clients: Etcd3[] = []
  const entry = { child: () => child, dir }
  live.add(entry)

  const url = (port: number): string => `${scheme}://${host}:${port}`
  const peerUrl = (): string => `http://${host}:${peerPort}`

  const spawnEtcd = (): ChildProcess => {
    const args = [
      `--name=${name}`,
      `--data-dir=${dataDir}`,
      `--listen-client-urls=${url(clientPort)}`,
      `--advertise-client-urls=${url(clientPort)}`,
      `--listen-peer-urls=${peerUrl()}`,
      `--initial-advertise-peer-urls=${peerUrl()}`,
      `--initial-cluster=${options.initialCluster ?? `${name}=${peerUrl()}`}`,
      '--initial-cluster-state=new',
      // A single voter elects itself after one election timeout: keep it short.
      '--heartbeat-interval=25',
      '--election-timeout=250',
      '--logger=zap',
      '--log-outputs=stderr',
    ]
    if (options.tls) {
      const c = options.tls.certificates
      args.push(`--cert-file=${c.serverCertFile}`, `--key-file=${c.serverKeyFile}`)
      args.push(`--trusted-ca-file=${c.caFile}`)
      if (options.tls.clientCertAuth) args.push('--client-cert-auth')
    }
    args.push(...(options.extraArgs ?? []))
    const [cmd, argv] =
      options.netns === undefined
        ? [etcdBinary(), args]
        : ['ip', ['netns', 'exec', options.netns, etcdBinary(), ...args]]
    const proc = spawn(cmd, argv, { cwd: dir, env: etcdEnv(), stdio: ['ignore', 'ignore', 'pipe'] })
    logText = ''
    proc.stderr?.on('data', (chunk: Buffer) => {
      logText += chunk.toString()
      if (logText.length > 200_000) logText = logText.slice(-100_000)
    })
    proc.once('error', (err) => {
      logText += `\nspawn error: ${err.message}`
    })
    return proc
  }

  const etcdctl = async (...args: string[]): Promise<string> => {
    const flags = [`--endpoints=${url(clientPort)}`, '--dial-timeout=2s', '--command-timeout=5s']
    if (options.tls) {
      const c = options.tls.certificates
      flags.push(`--cacert=${c.caFile}`, `--cert=${c.clientCertFile}`, `--key=${c.clientKeyFile}`)
    }
    const [cmd, argv] =
      options.netns === undefined
        ? [etcdctlBinary(), [...flags, ...args]]
        : ['ip', ['netns', 'exec', options.netns, etcdctlBinary(), ...flags, ...args]]
    try {
      const { stdout } = await execFileAsync(cmd, argv, {
        env: { ...process.env, ETCDCTL_API: '3' },
        maxBuffer: 16 * 1024 * 1024,
      })
      return stdout
    } catch (err) {
      const e = err as { stderr?: string; message: string }
      throw new Error(`etcdctl ${args.join(' ')} failed: ${e.stderr?.trim() || e.message}`, {
        cause: err,
      })
    }
  }

  const healthy = async (): Promise<boolean> => {
    if (options.netns === undefined && !options.tls) {
      try {
        const res = await fetch(`${url(clientPort)}/health`, { signal: AbortSignal.timeout(1000) })
        return res.ok && (await res.text()).includes('true')
      } catch {
        return false
      }
    }
    // Not reachable from here with fetch (namespace, TLS): trust etcd's own
    // "serving client traffic" line, logged once it has a leader.
    return /serving client traffic/.test(logText)
  }

  /** Spawns etcd and waits until healthy; returns false when the ports were taken. */
  const launch = async (): Promise<boolean> => {
    const proc = spawnEtcd()
    child = proc
    const deadline = Date.now() + startTimeoutMs
    for (;;) {
      if (proc.exitCode !== null || proc.signalCode !== null) {
        if (/address already in use/.test(logText)) return false
        throw new Error(`etcd exited during start-up:\n${logText.slice(-3000)}`)
      }
      if (await healthy()) break
      if (Date.now() > deadline) {
        proc.kill('SIGKILL')
        await exited(proc)
        throw new Error(`etcd not healthy after ${startTimeoutMs} ms:\n${logText.slice(-3000)}`)
      }
      await sleep(30)
    }
    if (proc.pid !== undefined) watchdog = spawnReaper({ pids: [proc.pid], paths: [dir] })
    return true
  }

  const killProcess = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child
    watchdog?.cancel()
    watchdog = undefined
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return
    if (paused) {
      proc.kill('SIGCONT')
      paused = false
    }
    const done = exited(proc)
    proc.kill(signal)
    const force = setTimeout(() => proc.kill('SIGKILL'), 3000)
    await done
    clearTimeout(force)
  }

  let stopped = false
  const stop = async (): Promise<void> => {
    if (stopped) return
    stopped = true
    for (const c of clients.splice(0)) c.close()
    await killProcess('SIGTERM')
    await rm(dir, { recursive: true, force: true })
    live.delete(entry)
  }

  try {
    for (let attempt = 0; ; attempt++) {
      const pickPort = async (given: number | undefined): Promise<number> =>
        given ?? (options.netns === undefined ? await freeLoopbackPort() : randomHighPort())
      clientPort = await pickPort(options.clientPort)
      peerPort = await pickPort(options.peerPort)
      if (await launch()) break
      if (attempt >= 4) throw new Error(`etcd could not bind its ports:\n${logText.slice(-3000)}`)
      await rm(dataDir, { recursive: true, force: true })
    }
  } catch (err) {
    await stop()
    throw err
  }

  return {
    get endpoints() {
      return [url(clientPort)]
    },
    dir,
    get pid() {
      return child?.exitCode === null && child.signalCode === null ? child.pid : undefined
    },
    get running() {
      return child !== undefined && child.exitCode === null && child.signalCode === null
    },
    connect(extra: Partial<IOptions> = {}): Etcd3 {
      const base: IOptions = { hosts: [url(clientPort)] }
      if (options.tls) {
        const c = options.tls.certificates
        base.credentials = {
          rootCertificate: c.ca,
          certChain: c.clientCert,
          privateKey: c.clientKey,
        }
      }
      const client = new Etcd3({ ...base, ...extra })
      clients.push(client)
      return client
    },
    etcdctl,
    async pause() {
      if (child?.pid === undefined || paused) return
      paused = true
      await pauseProcess(child.pid)
    },
    resume() {
      if (child?.pid === undefined || !paused) return
      resumeProcess(child.pid)
      paused = false
    },
    async kill() {
      await killProcess('SIGKILL')
    },
    async restart() {
      if (stopped) throw new Error('etcd was stopped; start a new one')
      await killProcess('SIGKILL')
      if (!(await launch())) {
        throw new Error(`etcd could not bind its ports again:\n${logText.slice(-3000)}`)
      }
    },
    stop,
    log: () => logText.slice(-10_000),
  }
}
