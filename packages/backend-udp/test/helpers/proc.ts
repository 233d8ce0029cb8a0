/** Test helpers: udp nodes as child processes inside namespaces, and a raw flanneld-format peer. */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { fileURLToPath } from 'node:url'

const NODE = fileURLToPath(new URL('./udp-node.ts', import.meta.url))
const RAW_PEER = fileURLToPath(new URL('./raw-peer.ts', import.meta.url))

/** A child process speaking JSON lines. */
export class JsonLineProcess {
  readonly lines: Record<string, unknown>[] = []
  stderr = ''
  private readonly child: ChildProcessWithoutNullStreams
  private waiters: (() => void)[] = []
  private exited = false

  constructor(ns: string, script: string, arg: unknown, env: Record<string, string> = {}) {
    this.child = spawn(
      'ip',
      [
        'netns',
        'exec',
        ns,
        process.execPath,
        '--conditions=@flannel/source',
        '--import',
        'tsx',
        script,
        JSON.stringify(arg),
      ],
      { stdio: ['pipe', 'pipe', 'pipe'], env: { ...process.env, ...env } },
    )
    let buffer = ''
    this.child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString()
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        try {
          this.lines.push(JSON.parse(line) as Record<string, unknown>)
        } catch {
          this.stderr += `unparsable: ${line}\n`
        }
        this.wake()
      }
    })
    this.child.stderr.on('data', (d: Buffer) => (this.stderr += d.toString()))
    this.child.on('exit', () => {
      this.exited = true
      this.wake()
    })
  }

  /** The child's pid: the node process itself (`ip netns exec` execs, it does not fork). */
  get pid(): number {
    return this.child.pid ?? -1
  }

  private wake(): void {
    for (const w of this.waiters.splice(0)) w()
  }

  send(value: unknown): void {
    this.child.stdin.write(JSON.stringify(value) + '\n')
  }

  /** Resolves with the first line (from `from` on) having `key`; rejects on exit or timeout. */
  async waitFor<T>(key: string, from = 0, timeoutMs = 60_000): Promise<T> {
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const hit = this.lines.slice(from).find((l) => key in l)
      if (hit) return hit[key] as T
      const err = this.lines.find((l) => 'error' in l)
      if (err) throw new Error(`child failed: ${String(err.error)}\n${this.stderr}`)
      if (this.exited) throw new Error(`child exited before "${key}"\n${this.stderr}`)
      if (Date.now() > deadline) throw new Error(`timeout waiting for "${key}"\n${this.stderr}`)
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, 200)
        this.waiters.push(() => {
          clearTimeout(t)
          resolve()
        })
      })
    }
  }

  /** Ends the process (stdin closed, then SIGKILL after a grace period). */
  async stop(): Promise<void> {
    if (this.exited) return
    this.child.stdin.end()
    const done = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    const t = setTimeout(() => this.child.kill('SIGKILL'), 5000)
    await done
    clearTimeout(t)
  }
}

/** What a udp node is started with (see udp-node.ts). */
export interface UdpNodeSpec {
  network: string
  subnet: string
  iface: string
  ifaceAddr: string
  mtu: number
  mode?: 'single' | 'batch' | 'offload'
  port?: number
}

/** Starts a udp node in `ns`, with `env` added to its environment. */
export function startUdpNode(
  ns: string,
  spec: UdpNodeSpec,
  env: Record<string, string> = {},
): JsonLineProcess {
  return new JsonLineProcess(ns, NODE, spec, env)
}

/** Runs the raw peer script in `ns` with a list of actions; resolves with its report. */
export async function runRawPeer<T>(ns: string, plan: unknown): Promise<T> {
  const p = new JsonLineProcess(ns, RAW_PEER, plan)
  try {
    return await p.waitFor<T>('report')
  } finally {
    await p.stop()
  }
}
