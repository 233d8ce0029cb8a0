import { Observable, type OperatorFunction } from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import { LeaseRecoveryError, isFlannelError, throwIfAborted } from '../errors.js'
import type { Lease, LeaseEvent } from '../lease/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { leaseKey } from '../registry/reconcile.js'
import type { SubnetRegistry } from '../registry/types.js'
import { DEFAULT_CONFIG_RETRY_MS, fetchNetworkConfig } from './fetch-config.js'
import { sleep, systemTimers, type AgentTimers } from './timers.js'

/** The longest wait between two failed attempts to take the subnet back after a wipe. */
export const MAX_RECOVERY_RETRY_MS = 30_000

/**
 * What the own lease's disappearance turned out to be:
 *
 * - `revoked`: the network config is still there, so somebody deleted (or let
 *   expire) this host's lease alone. flanneld then logs `Lease has been
 *   revoked. Shutting down daemon.` and exits (spec: core.md section 6); the
 *   agent does the same.
 * - `reacquired`: the config was gone too (the registry was wiped). The agent
 *   kept the data plane as it was, waited for the config to return and took
 *   the same subnet back; `lease` is the new lease.
 */
export type LeaseLossOutcome =
  | { readonly type: 'revoked' }
  | { readonly type: 'reacquired'; readonly lease: Lease }

/** Options of {@link handleLeaseLoss}. */
export interface LeaseLossOptions {
  readonly registry: SubnetRegistry
  /** The lease that disappeared (the agent's latest). */
  readonly lease: Lease
  /** The network config the agent runs with. */
  readonly config: NetworkConfig
  /** Ends the waiting; the call then rejects with an `AbortError`. */
  readonly signal: AbortSignal
  /** Wait before reading the config again (default 1 s, as flanneld's start-up). */
  readonly retryMs?: number | undefined
  readonly logger?: Logger | undefined
  readonly timers?: AgentTimers | undefined
  /** Called once when the loss is found to be a wipe, before the wait for the config. */
  readonly onWiped?: (() => void) | undefined
}

/**
 * Decides what the disappearance of the host's own lease means and, for a
 * wipe, takes the subnet back.
 *
 * flanneld (v0.28.10, `CompleteLease`) treats every removal of its lease key
 * as a revocation: it logs `Lease has been revoked. Shutting down daemon.` and
 * exits 0. When the whole prefix was deleted (config included) every flanneld
 * of the cluster does so at once, and none comes back until it is restarted
 * and the config is put back. So the config key decides:
 *
 * 1. The config is read once (a transient fault is retried every `retryMs`).
 *    If it is there (even invalid), only the lease went: `revoked`, as flanneld.
 * 2. If it is missing, the registry was wiped. Nothing on the host is touched
 *    (devices, routes, neighbours, rules, subnet.env stay; traffic between
 *    hosts keeps flowing) and the config is read every `retryMs`, logging
 *    flanneld's `Couldn't fetch network config: <error>` each time.
 * 3. Once it is back, it must be the config the agent runs with (the same
 *    `Network`, subnet range, IP families, rule mode and `Backend`): the data
 *    plane, the host rules and subnet.env were all made from it, and flanneld
 *    too reads the config only at start. A different config ends the agent
 *    with {@link LeaseRecoveryError}, the host left as it is, so that a restart
 *    registers afresh under the new config (the subnet may no longer fit).
 * 4. The lease is acquired as at start (spec: core.md section 5) with the
 *    lost subnets as the previous ones and the same attributes, so the free
 *    previous subnet is what the registry hands back. If another host took it
 *    meanwhile, the registry picks another subnet: that lease is released
 *    again and the agent ends with {@link LeaseRecoveryError} (two hosts must
 *    never route the same subnet). A transient fault (unreachable registry,
 *    the config deleted again) is retried with backoff, 1 s doubling up to
 *    {@link MAX_RECOVERY_RETRY_MS}.
 *
 * @throws AbortError when `signal` aborts.
 * @throws LeaseRecoveryError when the subnet cannot be taken back (see 3, 4).
 */
export async function handleLeaseLoss(opts: LeaseLossOptions): Promise<LeaseLossOutcome> {
  const { registry, lease, config, signal } = opts
  const logger = opts.logger ?? silentLogger
  const timers = opts.timers ?? systemTimers
  const retryMs = opts.retryMs ?? DEFAULT_CONFIG_RETRY_MS
  const subnet = lease.subnet.toString()

  if (await configIsThere(registry, { signal, logger, timers, retryMs })) return { type: 'revoked' }
  logger.warn(
    { subnet },
    'Lease and network config are gone from the registry (wiped); keeping the data plane and waiting for the config',
  )
  opts.onWiped?.()

  for (let attempt = 0; ; attempt++) {
    const restored = await fetchNetworkConfig(registry, { signal, retryMs, logger, timers })
    const changed = configDifference(config, restored)
    if (changed !== undefined) {
      throw new LeaseRecoveryError(
        lease.subnet,
        `the restored network config differs in ${changed}; restart the agent to register under it`,
      )
    }
    let acquired: Lease
    try {
      acquired = await registry.acquireLease(lease.attrs, {
        signal,
        previous: { subnet: lease.subnet, ipv6Subnet: lease.ipv6Subnet },
      })
    } catch (error) {
      throwIfAborted(signal)
      if (!isFlannelError(error) || !error.retryable) {
        throw new LeaseRecoveryError(lease.subnet, (error as Error).message, { cause: error })
      }
      const waitMs = Math.min(MAX_RECOVERY_RETRY_MS, retryMs * 2 ** attempt)
      logger.warn(
        { err: error, subnet, retryInMs: waitMs },
        `Taking subnet ${subnet} back failed: ${error.message} (trying again)`,
      )
      await sleep(timers, waitMs, signal).catch(() => throwIfAborted(signal))
      continue
    }
    if (leaseKey(acquired) !== leaseKey(lease)) {
      await registry
        .releaseLease(acquired, { signal })
        .catch((e: unknown) => logger.warn({ err: e }, 'releasing the lease failed'))
      throw new LeaseRecoveryError(
        lease.subnet,
        `another host holds it now (the registry offered ${leaseKey(acquired)})`,
      )
    }
    logger.info(
      { subnet, expiration: acquired.expiration.toISOString() },
      `Network config is back; took subnet ${subnet} back`,
    )
    return { type: 'reacquired', lease: acquired }
  }
}

/** Whether the config key exists (valid or not); retries transient faults every `retryMs`. */
async function configIsThere(
  registry: SubnetRegistry,
  opts: { signal: AbortSignal; logger: Logger; timers: AgentTimers; retryMs: number },
): Promise<boolean> {
  for (;;) {
    throwIfAborted(opts.signal)
    try {
      await registry.getNetworkConfig({ signal: opts.signal })
      return true
    } catch (error) {
      throwIfAborted(opts.signal)
      if (isFlannelError(error, 'CONFIG_NOT_FOUND')) return false
      if (isFlannelError(error, 'CONFIG_INVALID')) return true
      if (!isFlannelError(error) || !error.retryable) throw error
      opts.logger.warn(
        { err: error, retryInMs: opts.retryMs },
        `Reading the network config after the own lease disappeared failed: ${error.message} (trying again)`,
      )
      await sleep(opts.timers, opts.retryMs, opts.signal).catch(() => throwIfAborted(opts.signal))
    }
  }
}

/**
 * The first field (flanneld's JSON name) in which `next` differs from `used`
 * as `<Field> <new> (was <old>)`, or undefined when they are the same config.
 * Defaults count as written: `{"Network":"10.5.0.0/16"}` equals the same with
 * `"SubnetLen":24`; `Backend` is compared as a whole, its `Type` ignoring case.
 */
export function configDifference(used: NetworkConfig, next: NetworkConfig): string | undefined {
  const fields: [string, unknown, unknown][] = [
    ['EnableIPv4', used.enableIPv4, next.enableIPv4],
    ['EnableIPv6', used.enableIPv6, next.enableIPv6],
    ['EnableNFTables', used.enableNFTables, next.enableNFTables],
    ['Network', used.network?.toString(), next.network?.toString()],
    ['SubnetLen', used.subnetLen, next.subnetLen],
    ['SubnetMin', used.subnetMin?.toString(), next.subnetMin?.toString()],
    ['SubnetMax', used.subnetMax?.toString(), next.subnetMax?.toString()],
    ['IPv6Network', used.ipv6Network?.toString(), next.ipv6Network?.toString()],
    ['IPv6SubnetLen', used.ipv6SubnetLen, next.ipv6SubnetLen],
    ['IPv6SubnetMin', used.ipv6SubnetMin?.toString(), next.ipv6SubnetMin?.toString()],
    ['IPv6SubnetMax', used.ipv6SubnetMax?.toString(), next.ipv6SubnetMax?.toString()],
    ['Backend', canonicalBackend(used), canonicalBackend(next)],
  ]
  for (const [name, was, now] of fields) {
    if (was !== now) return `${name}: ${String(now ?? 'unset')} (was ${String(was ?? 'unset')})`
  }
  return undefined
}

function canonicalBackend(config: NetworkConfig): string {
  const rest = Object.entries(config.backend).filter(([k]) => k.toLowerCase() !== 'type')
  return canonicalJson({ Type: config.backendType, ...Object.fromEntries(rest) })
}

function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>).sort(([a], [b]) =>
      a < b ? -1 : a > b ? 1 : 0,
    )
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}

/**
 * Keeps a registry wipe (or any mass deletion that takes the own lease with
 * it) away from the data plane: the peers' removals that arrive in the batch
 * removing the own lease, and in every batch after it until the own lease is
 * added again, are not passed on. The rest passes unchanged, the own lease's
 * events included (for {@link withoutOwnLease} to drop).
 *
 * Why: one etcd watch response carries the whole deletion, own lease and
 * peers in one batch, and the same batch feeds the network. Passed on as it
 * is, it makes the network delete every peer's route, neighbour and FDB entry
 * while the agent is still deciding what the loss means, and pings between
 * the hosts fail although every data plane is up. (When the agent watched
 * twice, once for the peers and once for its own lease, whichever watch
 * delivered first decided: the pings lost in some wipe runs.)
 *
 * A held peer that is added again (it took its subnet back) is passed on as
 * usual. A held peer that never comes back keeps its entries, as a peer of a
 * stopped flanneld does, until its subnet is leased again (the new lease's
 * `added` replaces them) or the network is restarted (its first batch is the
 * full set). Removals after the own lease is back pass again.
 *
 * @example
 * ```ts
 * network.run(registry.watchLeases().pipe(holdPeerRemovalsWhileOwnLeaseIsGone(own), withoutOwnLease(own)))
 * ```
 */
export function holdPeerRemovalsWhileOwnLeaseIsGone(
  own: Lease,
): OperatorFunction<LeaseEvent[], LeaseEvent[]> {
  const ownKey = leaseKey(own)
  return (events) =>
    new Observable<LeaseEvent[]>((subscriber) => {
      let ownGone = false
      return events.subscribe({
        next: (batch) => {
          const removesOwn = batch.some((e) => e.type === 'removed' && leaseKey(e.lease) === ownKey)
          if (!ownGone && !removesOwn) {
            subscriber.next(batch)
            return
          }
          // Held: every peer's removal of this batch, wherever it stands in it.
          const out = batch.filter((e) => e.type === 'added' || leaseKey(e.lease) === ownKey)
          for (const e of out) if (leaseKey(e.lease) === ownKey) ownGone = e.type === 'removed'
          if (out.length > 0) subscriber.next(out)
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      })
    })
}
