import { encodeLeaseAttrs } from '../lease/codec.js'
import { subnetKey } from '../lease/key.js'
import type { Lease, LeaseEvent } from '../lease/types.js'

/** The key a lease is known by in a snapshot: its subnet key (`10.5.34.0-24`, dual-stack form with IPv6). */
export function leaseKey(lease: Lease): string {
  return subnetKey(lease.subnet, lease.ipv6Subnet)
}

/** The leases keyed by {@link leaseKey}; a later lease for the same key wins. */
export function leaseMap(leases: Iterable<Lease>): Map<string, Lease> {
  const map = new Map<string, Lease>()
  for (const lease of leases) map.set(leaseKey(lease), lease)
  return map
}

/** True when both leases publish the same value (their encoded attributes are equal). */
export function sameLeaseValue(a: Lease, b: Lease): boolean {
  return a === b || a.attrs === b.attrs || encodeLeaseAttrs(a.attrs) === encodeLeaseAttrs(b.attrs)
}

/**
 * The events that turn a subscriber's view `known` into `next` (both keyed
 * by subnet key, e.g. after a re-list): `removed` carrying the cached lease
 * (attributes included) for every key that is gone, then `added` for every
 * key that is new or whose value changed. Leases that only differ in
 * expiration produce nothing. Runs in time linear in the two sizes.
 *
 * @param same how to compare two leases of one key (default {@link sameLeaseValue});
 *   a store may compare its raw stored values instead.
 */
export function diffLeases<L extends Lease>(
  known: ReadonlyMap<string, L>,
  next: ReadonlyMap<string, L>,
  same: (before: L, after: L) => boolean = sameLeaseValue,
): LeaseEvent[] {
  const events: LeaseEvent[] = []
  for (const [key, lease] of known) {
    if (!next.has(key)) events.push({ type: 'removed', lease })
  }
  for (const [key, lease] of next) {
    const before = known.get(key)
    if (before === undefined || !same(before, lease)) events.push({ type: 'added', lease })
  }
  return events
}
