import { Observable, type OperatorFunction } from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import type { Ip4Net } from '../ip/ip4.js'
import type { Ip6Net } from '../ip/ip6.js'
import { hostBitsProblem, type SubnetKey } from '../lease/key.js'
import type { Lease, LeaseEvent } from '../lease/types.js'
import { leaseKey } from '../registry/reconcile.js'
import { OwnerIndex } from './owner-index.js'

/**
 * Whether `lease` lies on (part of) this host's own subnets: its IPv4 subnet
 * overlaps the own one, or both have an IPv6 subnet and those overlap. An
 * own subnet that is not set (`0.0.0.0/0` on an IPv6-only host) is not
 * compared. flanneld compares for equality (spec: core.md 7.2); overlapping
 * is what matters to the data plane, since a lease anywhere inside the own
 * subnet would replace the host's own routes.
 */
export function isOwnSubnet(lease: SubnetKey, own: SubnetKey): boolean {
  if (!own.subnet.isEmpty && lease.subnet.overlaps(own.subnet)) return true
  return (
    own.ipv6Subnet !== undefined &&
    !own.ipv6Subnet.isEmpty &&
    lease.ipv6Subnet !== undefined &&
    lease.ipv6Subnet.overlaps(own.ipv6Subnet)
  )
}

/**
 * Whether two peers' leases claim a common address: both have an IPv4
 * subnet (not `0.0.0.0/0`) and those overlap, or both have an IPv6 subnet
 * and those overlap.
 */
export function leasesOverlap(a: SubnetKey, b: SubnetKey): boolean {
  if (!a.subnet.isEmpty && !b.subnet.isEmpty && a.subnet.overlaps(b.subnet)) return true
  return (
    a.ipv6Subnet !== undefined &&
    b.ipv6Subnet !== undefined &&
    !a.ipv6Subnet.isEmpty &&
    !b.ipv6Subnet.isEmpty &&
    a.ipv6Subnet.overlaps(b.ipv6Subnet)
  )
}

/** Options of {@link withoutOwnLease}. */
export interface PeerLeaseOptions {
  /**
   * The network config: when given, a lease whose IPv4 subnet lies outside
   * `Network` (IPv4 enabled) or whose IPv6 subnet lies outside `IPv6Network`
   * (IPv6 enabled) is dropped too, so that nothing outside the pod network
   * (the underlay, the default route) is ever a peer's.
   */
  readonly config?: NetworkConfig | undefined
  /**
   * Called for each lease event dropped, with the reason (for logs and
   * `ignored` events); not for the own lease itself, which every registry's
   * stream carries.
   */
  readonly onIgnored?: ((lease: Lease, reason: string) => void) | undefined
}

/** True when `net` lies wholly inside `network`. */
function inside(net: Ip4Net, network: Ip4Net): boolean {
  return net.prefixLength >= network.prefixLength && network.contains(net.ip)
}

/** True when `net` lies wholly inside `network`. */
function inside6(net: Ip6Net, network: Ip6Net): boolean {
  return net.prefixLength >= network.prefixLength && network.contains(net.ip)
}

/**
 * A registry's lease stream as `Network.run` wants it: only the peers' leases
 * this host may act on, each subnet owned by exactly one lease.
 *
 * - Dropped: a lease with host bits set (no registry emits one, but a
 *   custom registry might), this host's own lease and every lease that
 *   overlaps its subnets, and (with `config`) a lease outside the pod network.
 * - Ownership: a lease that overlaps a peer's lease already passed on (a
 *   second key for the same subnet such as `10.5.2.0-24&fd00::-64` beside
 *   `10.5.2.0-24`, a `/25` inside a `/24`) is held back while that lease
 *   lives; the first one keeps its entries. When the owner is removed, the
 *   held leases that no longer overlap anything are passed on as `added`,
 *   oldest first. A removal is passed on only for a lease that was passed on.
 * - The first batch (every current lease) is passed on even when nothing is
 *   left of it, because a network takes its first batch as the full set of
 *   peers and removes what it owns for anybody else; later batches left
 *   empty are dropped.
 *
 * So no sequence of lease events can make a network change entries that
 * another lease or the host owns. The state is per subscription; applying
 * the operator twice gives what applying it once gives.
 *
 * @example
 * ```ts
 * network.run(registry.watchLeases().pipe(withoutOwnLease(network.lease, { config })))
 * ```
 */
export function withoutOwnLease(
  own: Lease,
  options: PeerLeaseOptions = {},
): OperatorFunction<LeaseEvent[], LeaseEvent[]> {
  const { config, onIgnored } = options
  const ownKey = leaseKey(own)
  const unusable = (lease: Lease): string | undefined => {
    const hostBits = hostBitsProblem(lease)
    if (hostBits !== undefined) return `not a lease: ${hostBits}`
    if (isOwnSubnet(lease, own)) {
      return `${leaseKey(lease)} overlaps this host's own subnet ${leaseKey(own)}`
    }
    if (config?.enableIPv4 && config.network && !inside(lease.subnet, config.network)) {
      return `${lease.subnet.toString()} lies outside the network ${config.network.toString()}`
    }
    if (
      config?.enableIPv6 &&
      config.ipv6Network &&
      lease.ipv6Subnet !== undefined &&
      !inside6(lease.ipv6Subnet, config.ipv6Network)
    ) {
      return `${lease.ipv6Subnet.toString()} lies outside the IPv6 network ${config.ipv6Network.toString()}`
    }
    return undefined
  }

  return (events) =>
    new Observable<LeaseEvent[]>((subscriber) => {
      /** Leases passed on, by key: each owns its subnets. */
      const owners = new OwnerIndex()
      /** Leases held back because they overlap an owner, by key, in arrival order. */
      const held = new Map<string, Lease>()
      let first = true
      const ownerOverlapping = (lease: Lease): Lease | undefined => owners.overlapping(lease)

      return events.subscribe({
        next: (batch) => {
          const out: LeaseEvent[] = []
          for (const event of batch) {
            const { lease } = event
            const key = leaseKey(lease)
            if (key === ownKey) continue // expected in a registry's stream: not worth a report
            const reason = unusable(lease)
            if (reason !== undefined) {
              onIgnored?.(lease, reason)
              continue
            }
            if (event.type === 'added') {
              if (owners.has(key)) {
                owners.set(key, lease)
                out.push(event)
                continue
              }
              const owner = ownerOverlapping(lease)
              if (owner !== undefined) {
                held.set(key, lease)
                onIgnored?.(lease, `${key} overlaps ${leaseKey(owner)}, which is another lease's`)
                continue
              }
              owners.set(key, lease)
              out.push(event)
              continue
            }
            if (held.delete(key) || !owners.delete(key)) continue
            out.push(event)
            for (const [waiting, next] of held) {
              if (ownerOverlapping(next) !== undefined) continue
              held.delete(waiting)
              owners.set(waiting, next)
              out.push({ type: 'added', lease: next })
            }
          }
          if (first || out.length > 0) subscriber.next(out)
          first = false
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => subscriber.complete(),
      })
    })
}
