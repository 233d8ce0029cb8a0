import type { NetworkConfig } from '../config/types.js'
import { isFlannelError, throwIfAborted } from '../errors.js'
import { silentLogger, type Logger } from '../logger.js'
import type { SubnetRegistry } from '../registry/types.js'
import { sleep, systemTimers, type AgentTimers } from './timers.js'

/** How long flanneld waits before fetching the network config again (1 second). */
export const DEFAULT_CONFIG_RETRY_MS = 1_000

/** Options of {@link fetchNetworkConfig}. */
export interface FetchNetworkConfigOptions {
  /** Ends the retries: the call then rejects with an `AbortError`. */
  readonly signal: AbortSignal
  /** Wait between attempts (default {@link DEFAULT_CONFIG_RETRY_MS}). */
  readonly retryMs?: number | undefined
  /** Where each failed attempt is logged (`Couldn't fetch network config: <error>`); silent by default. */
  readonly logger?: Logger | undefined
  /** Clock and timers; Node's by default. */
  readonly timers?: AgentTimers | undefined
  /** Called with the error of every failed attempt that is retried (e.g. to count registry errors). */
  readonly onRetry?: ((error: unknown) => void) | undefined
}

/**
 * Whether {@link fetchNetworkConfig} tries again after `error`: a missing
 * config, an unreachable registry (any error marked retryable), and an
 * invalid config (`CONFIG_INVALID`: a decode or validation error, which an
 * operator fixes by rewriting the config). Anything else (an abort, a closed
 * registry, an unexpected failure) ends the fetch.
 */
export function isRetryableConfigError(error: unknown): boolean {
  return isFlannelError(error) && (error.retryable || error.code === 'CONFIG_INVALID')
}

/**
 * Reads the network config as flanneld's start-up does (spec: core.md 2.5,
 * 10.3 step 4): tries again every `retryMs` while the config is missing,
 * invalid or the registry unreachable, logging `Couldn't fetch network
 * config: <error>` each time, until a valid config is read.
 *
 * @throws AbortError when `opts.signal` aborts.
 * @throws the registry's error when it is not one {@link isRetryableConfigError} accepts.
 *
 * @example
 * ```ts
 * const config = await fetchNetworkConfig(registry, { signal, logger })
 * ```
 */
export async function fetchNetworkConfig(
  registry: SubnetRegistry,
  opts: FetchNetworkConfigOptions,
): Promise<NetworkConfig> {
  const { signal } = opts
  const logger = opts.logger ?? silentLogger
  const timers = opts.timers ?? systemTimers
  const retryMs = opts.retryMs ?? DEFAULT_CONFIG_RETRY_MS
  for (;;) {
    throwIfAborted(signal)
    try {
      return await registry.getNetworkConfig({ signal })
    } catch (error) {
      throwIfAborted(signal)
      if (!isRetryableConfigError(error)) throw error
      opts.onRetry?.(error)
      logger.warn({ err: error }, `Couldn't fetch network config: ${(error as Error).message}`)
      await sleep(timers, retryMs, signal).catch(() => throwIfAborted(signal))
    }
  }
}
