/**
 * Runs inside a network namespace (`ip netns exec <ns> node --import tsx host-driver.ts`)
 * and serves a NetlinkHostNetwork over stdin/stdout as JSON lines:
 * request `{id, method, args}` -> reply `{id, result}` or `{id, error}`;
 * `{id, method: 'subscribe', args: [kinds]}` streams `{sub: id, event}` lines
 * until `{id: <new>, method: 'unsubscribe', args: [subId]}`.
 */
import { createInterface } from 'node:readline'
import type { Subscription } from 'rxjs'
import { NetlinkHostNetwork } from '../../src/index.js'

const host = new NetlinkHostNetwork()
const subscriptions = new Map<number, Subscription>()

function send(message: unknown): void {
  process.stdout.write(`${JSON.stringify(message)}\n`)
}

function serializeError(error: unknown): Record<string, unknown> {
  const e = error as Record<string, unknown>
  return {
    name: e?.name,
    message: e instanceof Error ? e.message : String(error),
    code: e?.code,
    errno: e?.errno,
    operation: e?.operation,
    field: e?.field,
    value: e?.value,
  }
}

const lines = createInterface({ input: process.stdin })
lines.on('line', (line) => {
  const request = JSON.parse(line) as { id: number; method: string; args: unknown[] }
  const { id, method } = request
  // JSON turns undefined arguments into null.
  const args = request.args.map((a) => (a === null ? undefined : a))
  if (method === 'subscribe') {
    const sub = host.notifications(args[0] as never).subscribe({
      next: (event) => send({ sub: id, event }),
      error: (error: unknown) => send({ sub: id, error: serializeError(error) }),
    })
    subscriptions.set(id, sub)
    // The socket joins its groups once the netlink module is loaded: make sure it is, then ack.
    host.listLinks().then(
      () => setImmediate(() => send({ id, result: null })),
      (error: unknown) => send({ id, error: serializeError(error) }),
    )
    return
  }
  if (method === 'unsubscribe') {
    subscriptions.get(args[0] as number)?.unsubscribe()
    subscriptions.delete(args[0] as number)
    send({ id, result: null })
    return
  }
  const fn = (host as unknown as Record<string, (...a: unknown[]) => Promise<unknown>>)[method]
  if (typeof fn !== 'function') {
    send({ id, error: { name: 'Error', message: `unknown method ${method}` } })
    return
  }
  fn.apply(host, args).then(
    (result) => send({ id, result: result ?? null }),
    (error: unknown) => send({ id, error: serializeError(error) }),
  )
})
lines.on('close', () => {
  for (const s of subscriptions.values()) s.unsubscribe()
  void host.close().then(() => process.exit(0))
})
send({ ready: true })
