/**
 * Small HTTP helpers for the cloud endpoints of the testkit: a loopback server
 * with a clean shutdown, body reading, a free-port finder and a forwarding
 * proxy whose requests can be inspected or answered in place.
 */
import {
  createServer,
  request as httpRequest,
  type IncomingHttpHeaders,
  type IncomingMessage,
  type Server,
  type ServerResponse,
} from 'node:http'
import { createServer as createNetServer, type AddressInfo } from 'node:net'

/** A running loopback HTTP server. */
export interface LocalServer {
  /** `http://127.0.0.1:<port>` (no trailing slash). */
  readonly url: string
  /** The port it listens on. */
  readonly port: number
  /** Stops listening and closes every open connection. */
  close(): Promise<void>
}

/** A request handler; a thrown error becomes a 500 answer. */
export type Handler = (req: IncomingMessage, res: ServerResponse, body: Buffer) => unknown

/** Starts an HTTP server on 127.0.0.1 with a free port. */
export async function startLocalServer(handler: Handler): Promise<LocalServer> {
  const server: Server = createServer((req, res) => {
    readBody(req)
      .then((body) => handler(req, res, body))
      .catch((err: unknown) => {
        if (!res.headersSent) res.writeHead(500, { 'content-type': 'text/plain' })
        res.end(String(err instanceof Error ? err.stack : err))
      })
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  return {
    url: `http://127.0.0.1:${port}`,
    port,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve())
        server.closeAllConnections()
      }),
  }
}

/** Reads a request body completely. */
export function readBody(req: IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => resolve(Buffer.concat(chunks)))
    req.on('error', reject)
  })
}

/** Asks the kernel for a free TCP port on 127.0.0.1 (for child processes that need a `-p`). */
export async function freePort(): Promise<number> {
  const srv = createNetServer()
  await new Promise<void>((resolve, reject) => {
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = srv.address() as AddressInfo
  await new Promise<void>((resolve) => srv.close(() => resolve()))
  return port
}

/** Sends a plain HTTP request to a loopback target and returns status, headers and body. */
export function forward(
  target: string,
  method: string,
  path: string,
  headers: IncomingHttpHeaders,
  body: Buffer,
): Promise<{ status: number; headers: IncomingHttpHeaders; body: Buffer }> {
  const url = new URL(path, target)
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      url,
      { method, headers: { ...headers, host: url.host, 'content-length': body.length } },
      (res) => {
        readBody(res)
          .then((b) => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }))
          .catch(reject)
      },
    )
    req.on('error', reject)
    req.end(body)
  })
}

/** What a proxy hook may answer instead of the target. */
export interface ProxyAnswer {
  readonly status: number
  readonly headers?: Record<string, string> | undefined
  readonly body: string | Buffer
}

/** Hooks of {@link startProxy}. */
export interface ProxyHooks {
  /** Called before forwarding; an answer is sent instead of forwarding. */
  readonly before?: (
    req: IncomingMessage,
    body: Buffer,
  ) => ProxyAnswer | undefined | Promise<ProxyAnswer | undefined>
  /** Called with the target's answer; may return a changed body. */
  readonly after?: (
    req: IncomingMessage,
    body: Buffer,
    answer: { status: number; body: Buffer },
  ) => Buffer | undefined | Promise<Buffer | undefined>
}

/** Starts a loopback HTTP proxy in front of `target` (a loopback URL). */
export function startProxy(target: string, hooks: ProxyHooks = {}): Promise<LocalServer> {
  return startLocalServer(async (req, res, body) => {
    const early = await hooks.before?.(req, body)
    if (early !== undefined) {
      res.writeHead(early.status, early.headers ?? {})
      res.end(early.body)
      return
    }
    const answer = await forward(target, req.method ?? 'GET', req.url ?? '/', req.headers, body)
    const changed = await hooks.after?.(req, body, answer)
    const out = changed ?? answer.body
    const headers = { ...answer.headers }
    delete headers['content-length']
    delete headers['transfer-encoding']
    res.writeHead(answer.status, { ...headers, 'content-length': String(out.length) })
    res.end(out)
  })
}
