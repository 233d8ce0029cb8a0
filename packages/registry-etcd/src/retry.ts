import {
  AbortError,
  RegistryUnavailableError,
  isFlannelError,
  throwIfAborted,
  type Logger,
} from '@flannel/core'
import { backoffDelay as coreBackoffDelay, sleep } from '@flannel/core/registry'
import {
  EtcdAuthenticationFailedError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCInvalidArgumentError,
  GRPCUnauthenticatedError,
  isRecoverableError,
} from 'etcd3'
import { EtcdRequestError } from './errors.js'

/** First retry delay; doubled per attempt up to {@link MAX_DELAY_MS}, with jitter. */
export const INITIAL_DELAY_MS = 50
/** Largest retry delay. */
export const MAX_DELAY_MS = 2_000

/** Text of etcd server errors that clear up by themselves (leader changes, overload). */
const TRANSIENT_TEXT =
  /UNAVAILABLE|DEADLINE_EXCEEDED|leader changed|no leader|request timed out|too many requests|timed out waiting|connection (reset|closed|refused)|ECONNREFUSED|ECONNRESET|EPIPE|stream ended|Watch stream/i

/** True when repeating the request later may succeed. */
export function isTransient(err: unknown): boolean {
  if (!(err instanceof Error)) return false
  if (isFlannelError(err)) return err.retryable
  if (
    err instanceof EtcdPermissionDeniedError ||
    err instanceof EtcdAuthenticationFailedError ||
    err instanceof GRPCUnauthenticatedError ||
    err instanceof GRPCInvalidArgumentError
  ) {
    return false
  }
  if (err instanceof GRPCDeadlineExceededError) return true
  if (isRecoverableError(err)) return true
  return TRANSIENT_TEXT.test(err.message)
}

/** Delay before retry number `attempt` (0-based): core's `backoffDelay`, by default from {@link INITIAL_DELAY_MS} to {@link MAX_DELAY_MS}. */
export function backoffDelay(
  attempt: number,
  random: () => number,
  initial = INITIAL_DELAY_MS,
  max = MAX_DELAY_MS,
): number {
  return coreBackoffDelay(attempt, random, initial, max)
}

/**
 * Settles with `promise`, or rejects with `AbortError` as soon as `signal`
 * aborts (the promise keeps running; its outcome is then ignored).
 */
export function raceAbort<T>(promise: Promise<T>, signal: AbortSignal | undefined): Promise<T> {
  if (signal === undefined) return promise
  promise.catch(() => undefined)
  if (signal.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError(undefined, { cause: signal.reason }))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort)
        resolve(value)
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(err)
      },
    )
  })
}

/** Settings of {@link withRetry}. */
export interface RetrySettings {
  /** Total budget in ms. */
  readonly timeoutMs: number
  /** Longest single attempt in ms (connecting included); then it is abandoned and retried. */
  readonly attemptTimeoutMs?: number | undefined
  readonly random: () => number
  readonly logger: Logger
  readonly signal?: AbortSignal | undefined
}

/**
 * Runs `attempt` until it succeeds, retrying transient etcd failures with
 * exponential backoff and jitter within `timeoutMs`. `attempt` gets the
 * absolute deadline (ms since epoch) to use as its gRPC call deadline: the
 * overall one, or `attemptTimeoutMs` from now when that comes first.
 *
 * @throws RegistryUnavailableError when the budget runs out on transient failures.
 * @throws EtcdRequestError when etcd refuses the request for good.
 * @throws AbortError when `signal` aborts.
 */
export async function withRetry<T>(
  operation: string,
  settings: RetrySettings,
  attempt: (deadline: number) => Promise<T>,
): Promise<T> {
  const { signal } = settings
  const deadline = Date.now() + settings.timeoutMs
  for (let n = 0; ; n++) {
    throwIfAborted(signal)
    try {
      const attemptDeadline =
        settings.attemptTimeoutMs === undefined
          ? deadline
          : Math.min(deadline, Date.now() + settings.attemptTimeoutMs)
      return await raceAbort(attempt(attemptDeadline), signal)
    } catch (err) {
      if (isFlannelError(err)) {
        if (err instanceof AbortError || !err.retryable) throw err
      } else if (!isTransient(err)) {
        const message = err instanceof Error ? err.message : String(err)
        throw new EtcdRequestError(operation, message, { cause: err })
      }
      const remaining = deadline - Date.now()
      if (remaining <= 0) {
        const message = err instanceof Error ? err.message : String(err)
        throw new RegistryUnavailableError(
          `etcd unavailable: ${operation} did not succeed within ${settings.timeoutMs} ms (${n + 1} attempts): ${message}`,
          { cause: err },
        )
      }
      const delay = Math.min(remaining, backoffDelay(n, settings.random))
      settings.logger.debug(
        {
          operation,
          attempt: n + 1,
          delayMs: delay,
          err: err instanceof Error ? err.message : err,
        },
        'etcd request failed, retrying',
      )
      await sleep(delay, signal)
    }
  }
}
