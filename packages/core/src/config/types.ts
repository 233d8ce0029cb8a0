import type { Ip4Net } from '../ip/ip4.js'
import type { Ip6Net } from '../ip/ip6.js'

/**
 * A validated network configuration with flanneld's defaults applied
 * (spec: core.md section 2). Produced by `parseNetworkConfig`.
 */
export interface NetworkConfig {
  /** IPv4 on (default true). */
  readonly enableIPv4: boolean
  /** IPv6 on (default false). */
  readonly enableIPv6: boolean
  /** Use nftables instead of iptables for the host rules. */
  readonly enableNFTables: boolean
  /** The whole IPv4 pod network; set when `enableIPv4`. */
  readonly network: Ip4Net | undefined
  /** Effective IPv4 prefix length per host (0 when IPv4 is off). */
  readonly subnetLen: number
  /** Lowest allocatable IPv4 subnet (prefix `subnetLen`); set when `enableIPv4`. */
  readonly subnetMin: Ip4Net | undefined
  /** Highest allocatable IPv4 subnet (prefix `subnetLen`); set when `enableIPv4`. */
  readonly subnetMax: Ip4Net | undefined
  /** The whole IPv6 pod network; set when `enableIPv6`. */
  readonly ipv6Network: Ip6Net | undefined
  /** Effective IPv6 prefix length per host (0 when IPv6 is off). */
  readonly ipv6SubnetLen: number
  /** Lowest allocatable IPv6 subnet; set when `enableIPv6`. */
  readonly ipv6SubnetMin: Ip6Net | undefined
  /** Highest allocatable IPv6 subnet; set when `enableIPv6`. */
  readonly ipv6SubnetMax: Ip6Net | undefined
  /** `Backend.Type`, lower-cased; `udp` when `Backend` is absent. */
  readonly backendType: string
  /** The `Backend` object as given (keys as written, `Type` included); `{}` when absent. */
  readonly backend: Readonly<Record<string, unknown>>
}
