import { Observable } from 'rxjs'
import { isOwnSubnet } from '../agent/own-lease.js'
import { isFlannelError } from '../errors.js'
import { hostBitsProblem } from '../lease/key.js'
import type { Lease, LeaseEvent } from '../lease/types.js'
import { leaseKey } from '../registry/reconcile.js'
import type { NetworkEvent } from './types.js'

/** What {@link runStaleRouteCollector} needs. */
export interface StaleRouteCollectorInit {
  /** This host's lease: always live. */
  readonly own: Lease
  /** Why peers' leases need no local work (the `ignored` reason). */
  readonly ignoredReason: string
  /** Whether to collect at all. */
  readonly enabled: boolean
  /** Pause between a change and the collection it triggers, so that leases acquired meanwhile count as live. */
  readonly delayMs: number
  /** Called on subscribe: the collection step and how to release what it uses. */
  readonly start: () => StaleRouteCollection
}

/** One subscription's collection step (supplied by the backend). */
export interface StaleRouteCollection {
  /**
   * Removes what no live lease owns. `only` limits it to those subnets;
   * undefined means every subnet. Emits what it removed through `emit`.
   */
  readonly collect: (
    live: ReadonlySet<string>,
    only: ReadonlySet<string> | undefined,
    signal: AbortSignal,
    emit: (event: NetworkEvent) => void,
  ) => Promise<void>
  /** Releases what `collect` used (called on unsubscribe). */
  readonly close: () => void
}

/**
 * A ready-made `Network.run` for backends whose routes live outside the
 * host (cloud route tables): tracks the live leases from the event stream,
 * reports each peer lease as `ignored`, and lets the backend collect routes
 * nobody owns. The first batch (every live lease) triggers a full
 * collection, later `removed` leases a collection of just their subnets.
 * Collections run one at a time, `delayMs` after the change (changes
 * meanwhile are merged). Unsubscribing aborts a running collection and
 * clears the timer.
 *
 * A subnet stays live while any lease (by key) holds it, so the removal of
 * a second key for a live subnet (`10.5.2.0-24&fd00::-64` beside
 * `10.5.2.0-24`) collects nothing. A lease with host bits set is no lease
 * and is ignored; the removal of a lease overlapping this host's subnet
 * never triggers a collection.
 *
 * @example
 * ```ts
 * run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
 *   return runStaleRouteCollector(events, {
 *     own: this.lease,
 *     ignoredReason: 'my-cloud: the route table carries the traffic',
 *     enabled: true,
 *     delayMs: 1000,
 *     start: () => ({ collect: (live, only, signal, emit) => deleteOrphans(live, only, signal, emit), close: () => {} }),
 *   })
 * }
 * ```
 */
export function runStaleRouteCollector(
  events: Observable<LeaseEvent[]>,
  init: StaleRouteCollectorInit,
): Observable<NetworkEvent> {
  return new Observable<NetworkEvent>((subscriber) => {
    const abort = new AbortController()
    const collection = init.start()
    const own = init.own.subnet.toString()
    /** Every live lease's IPv4 subnet, by lease key (this host's own always). */
    const leases = new Map<string, string>([[leaseKey(init.own), own]])
    const live = new Set<string>([own])
    const pending = new Set<string>()
    let first = true
    let all = false
    let timer: ReturnType<typeof setTimeout> | undefined
    let queue = Promise.resolve()
    const emit = (event: NetworkEvent): void => subscriber.next(event)

    const flush = (): void => {
      timer = undefined
      const only = all ? undefined : new Set(pending)
      all = false
      pending.clear()
      queue = queue
        .then(() => collection.collect(live, only, abort.signal, emit))
        .catch((error: unknown) => {
          if (abort.signal.aborted || isFlannelError(error, 'ABORTED')) return
          emit({ type: 'warning', message: 'could not collect stale routes', error })
        })
    }

    const input = events.subscribe({
      next: (batch) => {
        for (const event of batch) {
          const hostBits = hostBitsProblem(event.lease)
          if (hostBits !== undefined) {
            emit({ type: 'ignored', lease: event.lease, reason: `not a lease: ${hostBits}` })
            continue
          }
          const subnet = event.lease.subnet.toString()
          const key = leaseKey(event.lease)
          if (event.type === 'added') {
            leases.set(key, subnet)
            live.add(subnet)
            pending.delete(subnet)
            emit({ type: 'ignored', lease: event.lease, reason: init.ignoredReason })
          } else if (key !== leaseKey(init.own) && leases.delete(key)) {
            if ([...leases.values()].includes(subnet)) continue
            live.delete(subnet)
            if (!isOwnSubnet(event.lease, init.own)) pending.add(subnet)
          }
        }
        if (!init.enabled) return
        if (first) all = true
        first = false
        if ((all || pending.size > 0) && timer === undefined) {
          timer = setTimeout(flush, init.delayMs)
        }
      },
      error: (err: unknown) => subscriber.error(err),
      complete: () => {
        if (timer !== undefined) {
          clearTimeout(timer)
          flush()
        }
        void queue.then(() => subscriber.complete())
      },
    })

    return () => {
      if (timer !== undefined) clearTimeout(timer)
      abort.abort()
      input.unsubscribe()
      collection.close()
    }
  })
}
