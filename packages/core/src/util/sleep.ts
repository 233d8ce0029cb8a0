import { AbortError } from '../errors.js'

/**
 * Resolves after `ms` milliseconds, or rejects with {@link AbortError} as soon
 * as `signal` aborts (at once when it already has). The abort reason is kept
 * as the error's `cause`. An abort clears the timer, so nothing is left
 * scheduled; a normal wake-up removes the abort listener.
 *
 * @example
 * ```ts
 * const ac = new AbortController()
 * await sleep(200, ac.signal) // rejects with AbortError if ac.abort() runs first
 * ```
 */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) {
      reject(new AbortError(undefined, { cause: signal.reason }))
      return
    }
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new AbortError(undefined, { cause: signal?.reason }))
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}
