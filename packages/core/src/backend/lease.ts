import { NEVER, Observable, Subject } from 'rxjs'
import { withoutOwnLease } from '../agent/own-lease.js'
import { throwIfAborted } from '../errors.js'
import type { Lease, LeaseAttrs } from '../lease/types.js'
import type { Logger } from '../logger.js'
import type { SubnetRegistry } from '../registry/types.js'
import type { LeaseEvent } from '../lease/types.js'
import type { Backend, Network, NetworkEvent, PreparedNetwork, RegisterOptions } from './types.js'
import type { NetworkConfig } from '../config/types.js'

/**
 * Acquires this host's lease for `registerNetwork`. A failure other than an
 * abort gets flanneld's prefix `failed to acquire lease: ` on its message
 * (same error object, so its class and code are kept). When `opts.signal`
 * aborts while the registry was answering, the lease just acquired is
 * released again (best effort) and an `AbortError` thrown, so nothing is
 * left behind.
 *
 * @example
 * ```ts
 * const lease = await acquireBackendLease(ctx.registry, { publicIP: '192.0.2.10' }, opts)
 * ```
 */
export async function acquireBackendLease(
  registry: SubnetRegistry,
  attrs: LeaseAttrs,
  opts: RegisterOptions = {},
): Promise<Lease> {
  let lease: Lease
  try {
    lease = await registry.acquireLease(attrs, { signal: opts.signal, previous: opts.previous })
  } catch (error) {
    if (opts.signal?.aborted) throw error
    throw prefixMessage(error, 'failed to acquire lease')
  }
  if (opts.signal?.aborted) {
    await registry.releaseLease(lease).catch(() => undefined)
    throwIfAborted(opts.signal)
  }
  return lease
}

/**
 * Runs the backend's set-up steps for a freshly acquired `lease`. When they
 * fail, the lease is released (a failed release is only logged as a warning)
 * and the set-up's error is rethrown, so a failed start leaves no lease
 * behind. Undoing the set-up's own changes stays the caller's job, inside
 * `setUp`.
 *
 * @example
 * ```ts
 * const lease = await ctx.registry.acquireLease({ publicIP }, { signal, previous })
 * await setUpOrReleaseLease(ctx.registry, lease, logger, () => addRoute(lease.subnet, signal))
 * ```
 */
export async function setUpOrReleaseLease(
  registry: SubnetRegistry,
  lease: Lease,
  logger: Logger,
  setUp: () => Promise<void>,
): Promise<void> {
  try {
    await setUp()
  } catch (err) {
    await registry.releaseLease(lease).catch((releaseErr: unknown) => {
      logger.warn({ err: releaseErr }, 'could not release the lease after a failed start')
    })
    throw err
  }
}

function prefixMessage(error: unknown, prefix: string): unknown {
  if (error instanceof Error) {
    error.message = `${prefix}: ${error.message}`
    return error
  }
  return new Error(`${prefix}: ${String(error)}`)
}

/**
 * The lease owner's part of a start, for a backend with `prepare`: prepare,
 * acquire the lease with the prepared attributes (asking for
 * `opts.previous`), activate. Any failure (or an abort) undoes the
 * preparation and releases the lease, then rethrows; a failed acquisition
 * reads `failed to acquire lease: <reason>` as in flanneld. The Agent does
 * the same steps itself (with more between them); this is for running a
 * backend without an Agent, and what the backends' deprecated
 * `registerNetwork` does. As the Agent, it feeds the network peers only:
 * the returned network's `run` filters the stream it is given with
 * `withoutOwnLease` (this host's lease, leases overlapping it or outside the
 * network are reported `ignored`), so the registry's stream may be passed
 * as is.
 *
 * @example
 * ```ts
 * const network = await registerPrepared(registry, new HostGwBackend(ctx), config, { signal })
 * ```
 */
export async function registerPrepared(
  registry: SubnetRegistry,
  backend: Backend & Required<Pick<Backend, 'prepare'>>,
  config: NetworkConfig,
  opts: RegisterOptions = {},
): Promise<Network> {
  const storedAttrs = async () => registry.storedAttrs?.({ signal: opts.signal })
  const prepared = await backend.prepare(config, { signal: opts.signal, storedAttrs })
  return peersOnly(await activateWithLease(registry, prepared, opts), config)
}

/**
 * The same network, with `run` fed through `withoutOwnLease` as the Agent
 * feeds it (the backends filter nothing themselves). Everything else is the
 * network's own (a Proxy, so a backend's extra members stay reachable).
 */
function peersOnly(network: Network, config: NetworkConfig): Network {
  const run = (events: Observable<LeaseEvent[]>): Observable<NetworkEvent> => {
    const ignored = new Subject<NetworkEvent>()
    const inner = network.run(
      events.pipe(
        withoutOwnLease(network.lease, {
          config,
          onIgnored: (lease, reason) => ignored.next({ type: 'ignored', lease, reason }),
        }),
      ),
    )
    // A network that never reads the stream (alloc) stays as it is.
    if (inner === NEVER) return inner
    return new Observable<NetworkEvent>((out) => {
      const reports = ignored.subscribe((event) => out.next(event))
      const sub = inner.subscribe(out)
      return () => {
        reports.unsubscribe()
        sub.unsubscribe()
      }
    })
  }
  return new Proxy(network, {
    get: (target, prop) => (prop === 'run' ? run : Reflect.get(target, prop, target)),
  })
}

/**
 * Acquires the lease for a prepared network and activates it; on failure
 * aborts the preparation and releases the lease. (Step two of
 * {@link registerPrepared}.)
 */
export async function activateWithLease(
  registry: SubnetRegistry,
  prepared: PreparedNetwork,
  opts: RegisterOptions = {},
): Promise<Network> {
  let lease: Lease | undefined
  try {
    lease = await acquireBackendLease(registry, prepared.attrs, opts)
    const network = await prepared.activate(lease, { signal: opts.signal })
    throwIfAborted(opts.signal)
    return network
  } catch (error) {
    await prepared.abort().catch(() => undefined)
    if (lease !== undefined) await registry.releaseLease(lease).catch(() => undefined)
    throw error
  }
}
