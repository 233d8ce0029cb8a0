/** Runs async jobs one after another, so host changes never interleave. */
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
