import http from 'node:http'
import https from 'node:https'
import { createInterface } from 'node:readline'
import type { KubeConfig } from '@kubernetes/client-node'
import {
  AbortError,
  RegistryUnavailableError,
  isFlannelError,
  throwIfAborted,
  type Logger,
} from '@flannel/core'
import { backoffDelay, sleep } from '@flannel/core/registry'
import { KubeApiError, KubeConfigError, KubeForbiddenError } from './errors.js'

/** What a request is, for errors and logs: `patch nodes/status "node-1"`. */
export interface RequestTarget {
  readonly verb: string
  readonly resource: string
  readonly name?: string | undefined
}

/** One API request. */
export interface KubeRequest extends RequestTarget {
  readonly method: 'GET' | 'PATCH' | 'POST' | 'PUT' | 'DELETE'
  /** Path below the server URL, e.g. `/api/v1/nodes/node-1/status`. */
  readonly path: string
  readonly query?: Readonly<Record<string, string | undefined>> | undefined
  readonly body?: string | undefined
  readonly contentType?: string | undefined
}

/** A failure that may clear up by itself: connection trouble, 409, 429, 5xx, a timeout. */
export class TransientError extends Error {
  /** The HTTP status, when the server answered. */
  readonly status: number | undefined

  constructor(message: string, status?: number, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'TransientError'
    this.status = status
  }
}

/** The watch's resourceVersion is too old (410 Gone, or an ERROR event with code 410). */
export class GoneError extends Error {
  constructor(message: string) {
    super(message)
    this.name = 'GoneError'
  }
}

/** How a watch stream ended. */
export type WatchEnd =
  | { readonly kind: 'aborted' }
  | { readonly kind: 'closed' }
  | { readonly kind: 'gone'; readonly message: string }
  | { readonly kind: 'failed'; readonly error: unknown }

interface StatusBody {
  readonly kind?: string
  readonly message?: string
  readonly reason?: string
  readonly code?: number
}

function statusOf(text: string): StatusBody {
  try {
    const parsed = JSON.parse(text) as unknown
    return typeof parsed === 'object' && parsed !== null ? (parsed as StatusBody) : {}
  } catch {
    return {}
  }
}

/** Classifies an HTTP error answer. */
export function errorForStatus(target: RequestTarget, status: number, text: string): Error {
  const body = statusOf(text)
  const detail = body.message ?? (text.trim().slice(0, 200) || http.STATUS_CODES[status] || '')
  if (status === 401 || status === 403) {
    return new KubeForbiddenError(target.verb, target.resource, target.name, status, detail)
  }
  if (status === 410) return new GoneError(detail)
  if (status === 409 || status === 429 || status >= 500) {
    return new TransientError(`${target.verb} ${target.resource}: ${status} ${detail}`, status)
  }
  return new KubeApiError(target.verb, target.resource, target.name, status, body.reason, detail)
}

/** Settings of {@link KubeClient}. */
export interface KubeClientSettings {
  /** Longest single request (not a watch) in ms before it is abandoned and retried. */
  readonly attemptTimeoutMs: number
  /** Random source for retry jitter. */
  readonly random: () => number
  readonly logger: Logger
}

/** First retry delay of {@link KubeClient.call}, doubled per attempt up to {@link RETRY_MAX_MS}. */
export const RETRY_INITIAL_MS = 100
/** Largest retry delay. */
export const RETRY_MAX_MS = 5_000

/**
 * The HTTP side of the registry: JSON requests and watch streams against the
 * API server, with the server URL, TLS material and credentials from a
 * `@kubernetes/client-node` `KubeConfig` (kubeconfig files, in-cluster
 * service accounts, exec and token-file credentials all work as there).
 * Requests are made with `node:http(s)` so that each one is cancelled by its
 * AbortSignal at any point, the watch included.
 */
export class KubeClient {
  private readonly server: URL

  constructor(
    private readonly kc: KubeConfig,
    private readonly settings: KubeClientSettings,
  ) {
    const cluster = kc.getCurrentCluster()
    if (cluster === null) throw new KubeConfigError('options', 'no current cluster in the config')
    try {
      this.server = new URL(cluster.server)
    } catch (err) {
      throw new KubeConfigError('options', `invalid server URL ${JSON.stringify(cluster.server)}`, {
        cause: err,
      })
    }
  }

  /** The API server's base URL. */
  get url(): string {
    return this.server.toString().replace(/\/$/, '')
  }

  /**
   * One request, retried with backoff (100 ms doubling to 5 s, with jitter)
   * while it fails transiently, until it succeeds, fails for good, or
   * `signal` aborts. With `budgetMs`, retrying stops after that long with
   * `RegistryUnavailableError`.
   *
   * @throws KubeForbiddenError, KubeApiError for answers retrying will not fix.
   * @throws RegistryUnavailableError when `budgetMs` runs out.
   * @throws AbortError when `signal` aborts.
   */
  async call<T>(req: KubeRequest, signal: AbortSignal, budgetMs?: number): Promise<T> {
    const deadline = budgetMs === undefined ? undefined : Date.now() + budgetMs
    for (let attempt = 0; ; attempt++) {
      throwIfAborted(signal)
      try {
        return JSON.parse(await this.send(req, signal)) as T
      } catch (err) {
        if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason })
        if (!(err instanceof TransientError)) throw err
        const delay = backoffDelay(attempt, this.settings.random, RETRY_INITIAL_MS, RETRY_MAX_MS)
        if (deadline !== undefined && Date.now() + delay > deadline) {
          throw new RegistryUnavailableError(
            `kube-apiserver ${this.url} unavailable: ${req.verb} ${req.resource} did not succeed within ${budgetMs} ms (${attempt + 1} attempts): ${err.message}`,
            { cause: err },
          )
        }
        const fields = {
          verb: req.verb,
          resource: req.resource,
          attempt: attempt + 1,
          delayMs: delay,
          err: err.message,
        }
        const text = `${req.verb} ${req.resource} failed, retrying`
        if (attempt === 0) this.settings.logger.info(fields, text)
        else this.settings.logger.warn(fields, text)
        await sleep(delay, signal)
      }
    }
  }

  /** One attempt: resolves with the response body of a 2xx answer. */
  async send(req: KubeRequest, signal: AbortSignal): Promise<string> {
    const attempt = new AbortController()
    const timer = setTimeout(
      () => attempt.abort(new Error(`no answer within ${this.settings.attemptTimeoutMs} ms`)),
      this.settings.attemptTimeoutMs,
    )
    const both = AbortSignal.any([signal, attempt.signal])
    try {
      const res = await this.open(req, both)
      const text = await readBody(res, both)
      const status = res.statusCode ?? 0
      if (status >= 200 && status < 300) return text
      throw errorForStatus(req, status, text)
    } catch (err) {
      if (signal.aborted) throw new AbortError(undefined, { cause: signal.reason })
      if (attempt.signal.aborted) {
        throw new TransientError(String((attempt.signal.reason as Error).message), undefined, {
          cause: err,
        })
      }
      throw err
    } finally {
      clearTimeout(timer)
    }
  }

  /**
   * Follows a watch (`?watch=1`) until it ends, calling `onEvent` with each
   * event object in order. Resolves (never rejects) with how it ended. A
   * stream silent for `idleMs` counts as failed (a half-open connection).
   */
  async watch(
    req: KubeRequest,
    onEvent: (event: { type: string; object: unknown }) => void,
    signal: AbortSignal,
    idleMs: number,
  ): Promise<WatchEnd> {
    const stream = new AbortController()
    const both = AbortSignal.any([signal, stream.signal])
    let idle: NodeJS.Timeout | undefined
    const arm = (): void => {
      clearTimeout(idle)
      idle = setTimeout(() => stream.abort(new Error(`watch silent for ${idleMs} ms`)), idleMs)
    }
    try {
      arm()
      const res = await this.open({ ...req, query: { ...req.query, watch: '1' } }, both)
      const status = res.statusCode ?? 0
      if (status !== 200) {
        const err = errorForStatus(req, status, await readBody(res, both))
        return err instanceof GoneError
          ? { kind: 'gone', message: err.message }
          : { kind: 'failed', error: err }
      }
      res.setEncoding('utf8')
      const lines = createInterface({ input: res, crlfDelay: Infinity })
      // Destroying the response (abort, idle, a bad line) makes both emit
      // 'error'; the end is recorded below, so the events need a listener.
      lines.on('error', () => undefined)
      res.on('error', () => undefined)
      let end: WatchEnd = { kind: 'closed' }
      const closed = new Promise<void>((resolve) => {
        res.once('error', (err) => {
          end = { kind: 'failed', error: err }
          resolve()
        })
        res.once('aborted', () => {
          end = { kind: 'failed', error: new Error('watch connection aborted') }
          resolve()
        })
        lines.once('close', () => resolve())
      })
      lines.on('line', (line) => {
        if (line.trim() === '' || end.kind !== 'closed') return
        arm()
        let event: { type?: unknown; object?: unknown }
        try {
          event = JSON.parse(line) as { type?: unknown; object?: unknown }
        } catch {
          end = {
            kind: 'failed',
            error: new Error(`unparsable watch event: ${line.slice(0, 100)}`),
          }
          res.destroy()
          return
        }
        if (event.type === 'ERROR') {
          const st = (event.object ?? {}) as StatusBody
          end =
            st.code === 410
              ? { kind: 'gone', message: st.message ?? 'resourceVersion too old' }
              : { kind: 'failed', error: new Error(`watch error ${st.code}: ${st.message}`) }
          res.destroy()
          return
        }
        try {
          onEvent({ type: String(event.type), object: event.object })
        } catch (err) {
          end = { kind: 'failed', error: err }
          res.destroy()
        }
      })
      await closed
      if (signal.aborted) return { kind: 'aborted' }
      if (stream.signal.aborted) return { kind: 'failed', error: stream.signal.reason }
      return end
    } catch (err) {
      if (signal.aborted) return { kind: 'aborted' }
      if (stream.signal.aborted) return { kind: 'failed', error: stream.signal.reason }
      return { kind: 'failed', error: err }
    } finally {
      clearTimeout(idle)
      stream.abort()
    }
  }

  /** Sends the request; resolves with the response (body unread). */
  private async open(req: KubeRequest, signal: AbortSignal): Promise<http.IncomingMessage> {
    const url = new URL(this.server.toString())
    url.pathname = `${url.pathname.replace(/\/$/, '')}${req.path}`
    for (const [k, v] of Object.entries(req.query ?? {})) {
      if (v !== undefined) url.searchParams.set(k, v)
    }
    const options: https.RequestOptions = {
      method: req.method,
      headers: { Accept: 'application/json' },
    }
    try {
      await this.kc.applyToHTTPSOptions(options)
    } catch (err) {
      throw new KubeConfigError('credentials', (err as Error).message, { cause: err })
    }
    throwIfAborted(signal)
    const headers = { ...(options.headers as Record<string, string>) }
    if (req.body !== undefined) {
      headers['Content-Type'] = req.contentType ?? 'application/json'
      headers['Content-Length'] = String(Buffer.byteLength(req.body))
    }
    const lib = url.protocol === 'http:' ? http : https
    return await new Promise<http.IncomingMessage>((resolve, reject) => {
      const request = lib.request(url, { ...options, headers, signal }, resolve)
      request.on('error', (err) => {
        if (signal.aborted) reject(new AbortError(undefined, { cause: signal.reason }))
        else
          reject(
            new TransientError(`${req.verb} ${req.resource}: ${err.message}`, undefined, {
              cause: err,
            }),
          )
      })
      request.on('socket', (socket) => socket.setKeepAlive(true, 30_000))
      request.end(req.body)
    })
  }
}

function readBody(res: http.IncomingMessage, signal: AbortSignal): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = []
    const onAbort = (): void => {
      res.destroy()
      reject(new AbortError(undefined, { cause: signal.reason }))
    }
    if (signal.aborted) return onAbort()
    signal.addEventListener('abort', onAbort, { once: true })
    res.on('data', (c: Buffer) => chunks.push(c))
    res.on('end', () => {
      signal.removeEventListener('abort', onAbort)
      resolve(Buffer.concat(chunks).toString('utf8'))
    })
    res.on('error', (err) => {
      signal.removeEventListener('abort', onAbort)
      reject(new TransientError(`reading the answer: ${err.message}`, undefined, { cause: err }))
    })
  })
}

/** True when `err` is one this package classifies as worth retrying. */
export function isTransient(err: unknown): boolean {
  return err instanceof TransientError || (isFlannelError(err) && err.retryable)
}
