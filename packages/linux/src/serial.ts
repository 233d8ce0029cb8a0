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

/**
 * Calls `fn` up to `attempts` times, waiting `baseMs`, 2x, 4x... (with jitter) between tries.
 *
 * Gives up early, rethrowing the last error, once `stopped()` returns true, so a
 * backend being shut down does not keep retrying a host change.
 */
export async function withRetry<T>(
  fn: () => Promise<T>,
  attempts: number,
  baseMs: number,
  stopped: () => boolean,
): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await fn()
    } catch (error) {
      if (i >= attempts || stopped()) throw error
      const wait = baseMs * 2 ** (i - 1) * (0.75 + Math.random() / 2)
      await new Promise((r) => setTimeout(r, wait))
    }
  }
}
