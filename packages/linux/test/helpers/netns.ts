/** Test helpers: network namespaces created and removed by the test itself. */
import { execFile, spawn, type ChildProcessWithoutNullStreams } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { Observable } from 'rxjs'
import { FlannelError, InvalidArgumentError } from '@flannel/core'
import type { HostNetwork, HostNetworkNotification, NotificationKind } from '../../src/index.js'
import { NetlinkError } from '../../src/index.js'

const run = promisify(execFile)

/** Why kernel tests cannot run here, or undefined when they can. */
export async function kernelTestsUnavailable(): Promise<string | undefined> {
  if (process.platform !== 'linux') return 'not Linux'
  if (process.getuid?.() !== 0) return 'not root (network namespaces need root)'
  try {
    await run('ip', ['netns', 'list'])
  } catch {
    return 'the ip command (iproute2) is missing'
  }
  return undefined
}

/** A short random prefix for namespace and device names of one test run. */
export function runPrefix(): string {
  return `fl${randomBytes(2).toString('hex')}`
}

/** Runs a command and returns stdout; rejects with stderr on failure. */
export async function sh(cmd: string, args: readonly string[]): Promise<string> {
  try {
    const { stdout } = await run(cmd, [...args], { maxBuffer: 16 * 1024 * 1024 })
    return stdout
  } catch (error) {
    const e = error as { stderr?: string; message: string }
    throw new Error(`${cmd} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`)
  }
}

/** Runs a command inside a namespace (`ip netns exec <ns> ...`). */
export function inNs(ns: string, cmd: string, args: readonly string[]): Promise<string> {
  return sh('ip', ['netns', 'exec', ns, cmd, ...args])
}

/** Tracks namespaces created by a test so that they are always removed. */
export class Namespaces {
  private readonly names: string[] = []

  async create(name: string): Promise<string> {
    await sh('ip', ['netns', 'add', name])
    this.names.push(name)
    await inNs(name, 'ip', ['link', 'set', 'lo', 'up'])
    return name
  }

  async removeAll(): Promise<void> {
    for (const name of this.names.splice(0).reverse()) {
      await sh('ip', ['netns', 'del', name]).catch(() => undefined)
    }
  }
}

const DRIVER = fileURLToPath(new URL('./host-driver.ts', import.meta.url))

/**
 * A HostNetwork whose calls run in a child process inside `ns`, over the real
 * NetlinkHostNetwork there. Close it to end the child.
 */
export class RemoteHostNetwork implements HostNetwork {
  private readonly child: ChildProcessWithoutNullStreams
  private nextId = 1
  private readonly pending = new Map<
    number,
    { resolve: (v: unknown) => void; reject: (e: unknown) => void }
  >()
  private readonly streams = new Map<
    number,
    (msg: { event?: HostNetworkNotification; error?: unknown }) => void
  >()
  private readonly ready: Promise<void>
  private exited = false

  constructor(readonly ns: string) {
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
        DRIVER,
      ],
      { stdio: ['pipe', 'pipe', 'pipe'] },
    )
    let stderr = ''
    this.child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    let buffer = ''
    let onReady: () => void = () => {}
    let onFail: (e: Error) => void = () => {}
    this.ready = new Promise<void>((resolve, reject) => {
      onReady = resolve
      onFail = reject
    })
    this.child.stdout.on('data', (d: Buffer) => {
      buffer += d.toString()
      let nl: number
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl)
        buffer = buffer.slice(nl + 1)
        const msg = JSON.parse(line) as Record<string, unknown>
        if (msg.ready) onReady()
        else if (typeof msg.sub === 'number') this.streams.get(msg.sub)?.(msg)
        else if (typeof msg.id === 'number') {
          const p = this.pending.get(msg.id)
          this.pending.delete(msg.id)
          if (msg.error) p?.reject(reviveError(msg.error as Record<string, unknown>))
          else p?.resolve(msg.result)
        }
      }
    })
    this.child.on('exit', (code) => {
      this.exited = true
      const error = new Error(`host driver in ${ns} exited with ${code}: ${stderr.trim()}`)
      onFail(error)
      for (const p of this.pending.values()) p.reject(error)
      this.pending.clear()
    })
  }

  /** Process id of the child (`ip netns exec` execs node, so this is the node process). */
  get pid(): number | undefined {
    return this.child.pid
  }

  /** Resolves when the child is ready to serve calls. */
  start(): Promise<void> {
    return this.ready
  }

  private write(message: unknown): void {
    if (!this.exited && this.child.stdin.writable)
      this.child.stdin.write(`${JSON.stringify(message)}\n`)
  }

  private request(method: string, args: unknown[]): Promise<unknown> {
    if (this.exited) return Promise.reject(new Error(`host driver in ${this.ns} has exited`))
    const id = this.nextId++
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject })
      this.write({ id, method, args })
    })
  }

  private proxy<T>(method: string, ...args: unknown[]): Promise<T> {
    return this.ready.then(() => this.request(method, args)) as Promise<T>
  }

  listLinks = (): ReturnType<HostNetwork['listLinks']> => this.proxy('listLinks')
  getLink: HostNetwork['getLink'] = (n) =>
    this.proxy('getLink', n).then((l) => l ?? undefined) as never
  createVxlanLink: HostNetwork['createVxlanLink'] = (s) => this.proxy('createVxlanLink', s)
  setLinkMtu: HostNetwork['setLinkMtu'] = (i, m) => this.proxy('setLinkMtu', i, m)
  setLinkUp: HostNetwork['setLinkUp'] = (i, u) => this.proxy('setLinkUp', i, u)
  deleteLink: HostNetwork['deleteLink'] = (i) => this.proxy('deleteLink', i)
  listAddresses: HostNetwork['listAddresses'] = (f) => this.proxy('listAddresses', f)
  addAddress: HostNetwork['addAddress'] = (a) => this.proxy('addAddress', a)
  deleteAddress: HostNetwork['deleteAddress'] = (a) => this.proxy('deleteAddress', a)
  listNeighbours: HostNetwork['listNeighbours'] = (f) => this.proxy('listNeighbours', f)
  replaceNeighbour: HostNetwork['replaceNeighbour'] = (n) => this.proxy('replaceNeighbour', n)
  deleteNeighbour: HostNetwork['deleteNeighbour'] = (k) => this.proxy('deleteNeighbour', k)
  listFdb: HostNetwork['listFdb'] = (f) => this.proxy('listFdb', f)
  appendFdb: HostNetwork['appendFdb'] = (e) => this.proxy('appendFdb', e)
  replaceFdb: HostNetwork['replaceFdb'] = (e) => this.proxy('replaceFdb', e)
  deleteFdb: HostNetwork['deleteFdb'] = (k) => this.proxy('deleteFdb', k)
  listRoutes: HostNetwork['listRoutes'] = (f) => this.proxy('listRoutes', f)
  addRoute: HostNetwork['addRoute'] = (r) => this.proxy('addRoute', r)
  replaceRoute: HostNetwork['replaceRoute'] = (r) => this.proxy('replaceRoute', r)
  deleteRoute: HostNetwork['deleteRoute'] = (k) => this.proxy('deleteRoute', k)

  notifications(kinds?: readonly NotificationKind[]): Observable<HostNetworkNotification> {
    return new Observable<HostNetworkNotification>((subscriber) => {
      const id = this.nextId++
      this.streams.set(id, (msg) => {
        if (msg.error) subscriber.error(reviveError(msg.error as Record<string, unknown>))
        else if (msg.event) subscriber.next(msg.event)
      })
      // Subscribe request uses the stream id as its request id.
      const registered = this.ready.then(
        () =>
          new Promise<unknown>((resolve, reject) => {
            this.pending.set(id, { resolve, reject })
            this.child.stdin.write(
              `${JSON.stringify({ id, method: 'subscribe', args: [kinds] })}\n`,
            )
          }),
      )
      registered.catch((e: unknown) => subscriber.error(e))
      return () => {
        this.streams.delete(id)
        void registered
          .then(() => (this.exited ? undefined : this.request('unsubscribe', [id])))
          .catch(() => undefined)
      }
    })
  }

  /** Resolves once the driver has acknowledged every subscription made so far (socket joined). */
  async settle(): Promise<void> {
    await this.proxy('listLinks')
  }

  async close(): Promise<void> {
    if (this.exited) return
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()))
    this.child.stdin.end()
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 3000)
    await exited
    clearTimeout(timer)
  }
}

function reviveError(e: Record<string, unknown>): Error {
  if (e.code === 'NETLINK_ERROR' && typeof e.errno === 'string') {
    const operation = typeof e.operation === 'string' ? e.operation : 'remote'
    return new NetlinkError(operation, e.errno)
  }
  if (e.code === 'INVALID_ARGUMENT')
    return new InvalidArgumentError(String(e.field), e.value, String(e.message))
  if (typeof e.code === 'string') return new FlannelError(e.code, String(e.message))
  return new Error(String(e.message))
}
