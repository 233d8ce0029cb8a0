/**
 * Runs async jobs one after another, so host changes never interleave.
 *
 * Kernel backends (vxlan, host-gw) apply routes, neighbours and FDB entries
 * through one queue each, so a lease event is fully applied before the next
 * one starts.
 */
export class SerialQueue {
  private tail: Promise<void> = Promise.resolve()

  /** Queues `job`; the returned promise settles with it. A failed job does not stop the queue. */
  run<T>(job: () => Promise<T>): Promise<T> {
    const result = this.tail.then(job)
    this.tail = result.then(
      () => undefined,
      () => undefined,
    )
    return result
  }
}

/** Optional behaviour of {@link withRetry}. */
export interface RetryHooks {
  /** Whether an error is worth another attempt; default every error is. */
  readonly retryable?: ((error: unknown) => boolean) | undefined
  /** Called before each wait with the failed attempt's number (1-based) and the wait in ms. */
  readonly onRetry?: ((error: unknown, attempt: number, waitMs: number) => void) | undefined
}

/**
 * Calls `fn` up to `attempts` times, waiting `baseMs`, 2x, 4x... (with jitter) between tries.
 *
 * Gives up early, rethrowing the last error, once `stopped()` returns true, so a
 * backend being shut down does not keep retrying a host change; also at once
 * when `hooks.retryable` says the error will not go away.
 */
export async function withRetry<T>(
  fn: () => Promise<T>,
  attempts: number,
  baseMs: number,
  stopped: () => boolean,
  hooks: RetryHooks = {},
): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn()
    } catch (error) {
      if (i >= attempts || stopped()) throw error
      if (hooks.retryable && !hooks.retryable(error)) throw error
      const wait = baseMs * 2 ** (i - 1) * (0.75 + Math.random() / 2)
      hooks.onRetry?.(error, i, wait)
      await new Promise((r) => setTimeout(r, wait))
    }
  }
}
