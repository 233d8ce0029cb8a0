import { AbortError } from '../errors.js'

/** Options of {@link fetchMetadata}. */
export interface FetchMetadataOptions {
  /** The server's base URL, for the timeout's message. */
  readonly endpoint: string
  /** How long one request may take. */
  readonly timeoutMs: number
  /** `GET` unless given. */
  readonly method?: string | undefined
  readonly headers?: Readonly<Record<string, string>> | undefined
  /** The caller's signal: its abort is an `AbortError`. */
  readonly signal?: AbortSignal | undefined
}

/**
 * One request to a cloud's instance metadata server, as the cloud backends
 * make it: bounded by `timeoutMs` (then an `Error` reading `no answer from
 * <endpoint> within <n> ms`), an `AbortError` when the caller's signal
 * aborts, otherwise `fetch`'s own error. The answer's status is the caller's
 * to judge.
 *
 * @example
 * ```ts
 * const res = await fetchMetadata(new URL('/latest/meta-data/instance-id', endpoint), {
 *   endpoint, timeoutMs: 2000, signal,
 * })
 * ```
 */
export async function fetchMetadata(
  url: string | URL,
  opts: FetchMetadataOptions,
): Promise<Response> {
  const timeout = AbortSignal.timeout(opts.timeoutMs)
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout])
  try {
    return await fetch(url, {
      ...(opts.method === undefined ? {} : { method: opts.method }),
      ...(opts.headers === undefined ? {} : { headers: { ...opts.headers } }),
      signal,
    })
  } catch (err) {
    if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason })
    if (timeout.aborted) {
      throw new Error(`no answer from ${opts.endpoint} within ${opts.timeoutMs} ms`)
    }
    throw err
  }
}

/**
 * An error's message followed by its cause's in parentheses (`fetch failed
 * (connect ECONNREFUSED 127.0.0.1:9)`), for error texts that wrap it.
 *
 * @example
 * ```ts
 * throw new Error(`error getting instance ID: ${describeError(err)}`, { cause: err })
 * ```
 */
export function describeError(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message
  }
  return String(err)
}
