import type { LeaseEvent } from '@flannel/core'
import type { StoredLease } from './store.js'

/**
 * The events that turn the subscriber's view `known` into `next` after a
 * re-list: `added` for a lease that is new or whose stored value changed,
 * `removed` (with the cached attributes) for a lease that is gone.
 * Unchanged leases produce nothing.
 */
export function snapshotDifferences(
  known: ReadonlyMap<string, StoredLease>,
  next: ReadonlyMap<string, StoredLease>,
): LeaseEvent[] {
  const events: LeaseEvent[] = []
  for (const [name, lease] of known) {
    if (!next.has(name)) events.push({ type: 'removed', lease: lease.lease })
  }
  for (const [name, lease] of next) {
    const before = known.get(name)
    if (before === undefined || before.value !== lease.value) {
      events.push({ type: 'added', lease: lease.lease })
    }
  }
  return events
}
