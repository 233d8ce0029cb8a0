/**
 * The clock and timers the agent uses; injectable so tests can drive renewal
 * without waiting (a fake clock) and so that nothing depends on wall time.
 */
export interface AgentTimers {
  /** Current time in milliseconds since the epoch. */
  now(): number
  /** Schedules `fn` after `ms` milliseconds; returns a handle for {@link AgentTimers.clearTimeout}. */
  setTimeout(fn: () => void, ms: number): unknown
  /** Cancels a timer scheduled with {@link AgentTimers.setTimeout}. */
  clearTimeout(handle: unknown): void
}

/** Node's real clock and timers. */
export const systemTimers: AgentTimers = {
  now: () => Date.now(),
  setTimeout: (fn, ms) => setTimeout(fn, ms),
  clearTimeout: (handle) => clearTimeout(handle as ReturnType<typeof setTimeout>),
}

/** Resolves after `ms` on `timers`, or rejects when `signal` aborts (the timer is then cleared). */
export function sleep(timers: AgentTimers, ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) {
      reject(signal.reason)
      return
    }
    const onAbort = (): void => {
      timers.clearTimeout(handle)
      reject(signal.reason)
    }
    const handle = timers.setTimeout(() => {
      signal.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal.addEventListener('abort', onAbort, { once: true })
  })
}
