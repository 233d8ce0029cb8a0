import type { Ip4Net } from '../ip/ip4.js'
import type { Ip6Net } from '../ip/ip6.js'

/**
 * What a host publishes with its lease: the value stored in the registry
 * (spec: core.md section 3).
 */
export interface LeaseAttrs {
  /** The host's external IPv4 address; `0.0.0.0` when it has none. */
  readonly publicIP: string
  /** The host's external IPv6 address, if any. */
  readonly publicIPv6?: string | undefined
  /** `vxlan`, `host-gw`, ...; absent for udp, alloc and the cloud backends. */
  readonly backendType?: string | undefined
  /** Backend data for the IPv4 side (vxlan: `{ VNI, VtepMAC }`). */
  readonly backendData?: unknown
  /** Backend data for the IPv6 side. */
  readonly backendV6Data?: unknown
}

/** One host's claim on one subnet of the network. */
export interface Lease {
  /** The IPv4 subnet. */
  readonly subnet: Ip4Net
  /** The IPv6 subnet, when IPv6 is enabled. */
  readonly ipv6Subnet?: Ip6Net | undefined
  /** The published attributes. */
  readonly attrs: LeaseAttrs
  /** When the lease runs out unless renewed. */
  readonly expiration: Date
}

/** A change in the set of leases. A removal carries the removed lease's attributes. */
export interface LeaseEvent {
  readonly type: 'added' | 'removed'
  readonly lease: Lease
}

/** Subnets a host held before (from subnet.env), asked for again on acquisition. */
export interface PreviousSubnets {
  readonly subnet?: Ip4Net | undefined
  readonly ipv6Subnet?: Ip6Net | undefined
}
