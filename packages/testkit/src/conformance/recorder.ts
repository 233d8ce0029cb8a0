import type { Observable } from 'rxjs'
import type { LeaseEvent } from '@flannel/core'

/** How long {@link BatchRecorder.until} waits by default before failing. */
export const DEFAULT_WAIT_MS = 5_000

/**
 * Subscribes to a lease stream and keeps every batch it delivers, so a test
 * can wait for a condition and then assert on what arrived.
 */
export class BatchRecorder {
  /** Every batch delivered so far, in order. */
  readonly batches: LeaseEvent[][] = []
  /** The error the stream ended with, if any. */
  error: unknown = undefined
  /** True once the stream completed. */
  completed = false
  private readonly subscription

  constructor(stream: Observable<LeaseEvent[]>) {
    this.subscription = stream.subscribe({
      next: (batch) => this.batches.push(batch),
      error: (err: unknown) => (this.error = err),
      complete: () => (this.completed = true),
    })
  }

  /** Every event of every batch, flattened. */
  get events(): LeaseEvent[] {
    return this.batches.flat()
  }

  /**
   * Resolves once `predicate` holds (checked every 5 ms); rejects after
   * `waitMs`, naming `what`, or at once if the stream failed.
   */
  async until(what: string, predicate: () => boolean, waitMs = DEFAULT_WAIT_MS): Promise<void> {
    const deadline = Date.now() + waitMs
    for (;;) {
      if (predicate()) return
      if (this.error !== undefined) throw this.error
      if (Date.now() > deadline) {
        throw new Error(`gave up waiting for ${what}; batches so far: ${describe(this.batches)}`)
      }
      await new Promise((resolve) => setTimeout(resolve, 5))
    }
  }

  /** Stops the subscription. */
  unsubscribe(): void {
    this.subscription.unsubscribe()
  }
}

function describe(batches: LeaseEvent[][]): string {
  return JSON.stringify(batches.map((b) => b.map((e) => `${e.type} ${e.lease.subnet.toString()}`)))
}
