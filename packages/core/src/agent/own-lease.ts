import { filter, map, type OperatorFunction } from 'rxjs'
import type { Lease, LeaseEvent } from '../lease/types.js'

/**
 * Whether `lease` is this host's (spec: core.md 7.2): the IPv4 subnets are
 * equal, and the IPv6 subnets too when the lease carries one.
 */
export function isOwnSubnet(lease: Lease, own: Lease): boolean {
  if (!lease.subnet.equals(own.subnet)) return false
  return lease.ipv6Subnet === undefined || lease.ipv6Subnet.equals(own.ipv6Subnet)
}

/**
 * A registry's lease stream as `Network.run` wants it: without this host's
 * own lease. The first batch (every current lease) is passed on even when
 * nothing is left of it, because a network takes its first batch as the full
 * set of peers and removes what it owns for anybody else; later batches left
 * empty are dropped.
 *
 * @example
 * ```ts
 * network.run(registry.watchLeases().pipe(withoutOwnLease(network.lease)))
 * ```
 */
export function withoutOwnLease(own: Lease): OperatorFunction<LeaseEvent[], LeaseEvent[]> {
  return (events) =>
    events.pipe(
      map((batch) => batch.filter((e) => !isOwnSubnet(e.lease, own))),
      filter((batch, index) => index === 0 || batch.length > 0),
    )
}
