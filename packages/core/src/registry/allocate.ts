import { ConfigError, SubnetExhaustedError } from '../errors.js'
import type { NetworkConfig } from '../config/types.js'
import { Ip4Net } from '../ip/ip4.js'
import { Ip6Net } from '../ip/ip6.js'
import type { Lease, LeaseAttrs, PreviousSubnets } from '../lease/types.js'
import { lowestFree, type SearchRange } from './free.js'

/** How many free subnets the allocator collects before picking one at random (flanneld: 100). */
export const ALLOCATION_CANDIDATES = 100

/**
 * What a registry should do to give a host its lease, as decided by
 * {@link chooseSubnet}:
 * - `reuse`: write the host's attrs onto `lease` (the one carrying its PublicIP);
 * - `create`: create a lease for `subnet` (and `ipv6Subnet`), after deleting
 *   `stale` (the host's own lease that no longer fits the config) if set.
 */
export type AllocationDecision =
  | { readonly kind: 'reuse'; readonly lease: Lease }
  | {
      readonly kind: 'create'
      /** Why this subnet: the host's previous one, or a random free pick. */
      readonly source: 'previous' | 'random'
      readonly subnet: Ip4Net
      readonly ipv6Subnet?: Ip6Net | undefined
      /** The host's own incompatible lease, to delete before creating. */
      readonly stale?: Lease | undefined
    }

function ip4Fits(config: NetworkConfig, subnet: Ip4Net): boolean {
  const { subnetMin: min, subnetMax: max } = config
  if (min === undefined || max === undefined) return false
  return subnet.prefixLength === config.subnetLen && subnet.ip >= min.ip && subnet.ip <= max.ip
}

function ip6Fits(config: NetworkConfig, subnet: Ip6Net | undefined): boolean {
  if (!config.enableIPv6) return subnet === undefined
  const { ipv6SubnetMin: min, ipv6SubnetMax: max } = config
  if (subnet === undefined || min === undefined || max === undefined) return false
  return subnet.prefixLength === config.ipv6SubnetLen && subnet.ip >= min.ip && subnet.ip <= max.ip
}

/**
 * flanneld's test whether an existing or previous lease still fits the
 * config (spec: core.md section 5, step 4): the IPv4 subnet has prefix
 * `SubnetLen` and lies in `SubnetMin..SubnetMax`; with IPv6 on, the IPv6
 * subnet exists and fits likewise; with IPv6 off, there is none.
 */
export function isCompatible(config: NetworkConfig, subnet: Ip4Net, ipv6Subnet?: Ip6Net): boolean {
  return ip4Fits(config, subnet) && ip6Fits(config, ipv6Subnet)
}

function pick<T>(items: readonly T[], random: () => number): T {
  const index = Math.min(items.length - 1, Math.max(0, Math.floor(random() * items.length)))
  return items[index]!
}

function ip4Range(config: NetworkConfig): SearchRange | undefined {
  const { subnetMin: min, subnetMax: max } = config
  if (min === undefined || max === undefined) return undefined
  return { width: 32, prefixLength: config.subnetLen, min: BigInt(min.ip), max: BigInt(max.ip) }
}

function ip6Range(config: NetworkConfig): SearchRange | undefined {
  const { ipv6SubnetMin: min, ipv6SubnetMax: max } = config
  if (min === undefined || max === undefined) return undefined
  return { width: 128, prefixLength: config.ipv6SubnetLen, min: min.ip, max: max.ip }
}

/**
 * The lowest {@link ALLOCATION_CANDIDATES} IPv4 subnets of `SubnetMin..SubnetMax`
 * that overlap no lease (whatever the lease's prefix), lowest first.
 */
export function freeSubnets(config: NetworkConfig, leases: Iterable<Lease>): Ip4Net[] {
  const range = ip4Range(config)
  if (range === undefined) return []
  const taken = [...leases].map((l) => ({
    ip: BigInt(l.subnet.ip),
    prefixLength: l.subnet.prefixLength,
  }))
  return lowestFree(range, taken, ALLOCATION_CANDIDATES).map(
    (ip) => new Ip4Net(Number(ip), config.subnetLen),
  )
}

/** Like {@link freeSubnets} for the IPv6 range (empty when IPv6 is off). */
export function freeIpv6Subnets(config: NetworkConfig, leases: Iterable<Lease>): Ip6Net[] {
  const range = config.enableIPv6 ? ip6Range(config) : undefined
  if (range === undefined) return []
  const taken: { ip: bigint; prefixLength: number }[] = []
  for (const l of leases) if (l.ipv6Subnet) taken.push(l.ipv6Subnet)
  return lowestFree(range, taken, ALLOCATION_CANDIDATES).map(
    (ip) => new Ip6Net(ip, config.ipv6SubnetLen),
  )
}

/** The host's previous subnets when free and compatible (spec: core.md section 5, step 5). */
function previousCandidate(
  config: NetworkConfig,
  leases: readonly Lease[],
  previous: PreviousSubnets | undefined,
): { subnet: Ip4Net; ipv6Subnet: Ip6Net | undefined } | undefined {
  const subnet = previous?.subnet
  if (subnet === undefined) return undefined
  const ipv6Subnet = config.enableIPv6 ? previous?.ipv6Subnet : undefined
  // flanneld checks for a lease on exactly this subnet, not for overlaps.
  const held = leases.some((l) => l.subnet.equals(subnet))
  return !held && isCompatible(config, subnet, ipv6Subnet) ? { subnet, ipv6Subnet } : undefined
}

/**
 * Decides a host's lease exactly as flanneld does (spec: core.md section 5):
 * reuse the first lease carrying `attrs.publicIP` if it is compatible (an
 * incompatible one is marked `stale`), else the previous subnet if no lease
 * holds it and it is compatible, else a uniformly random pick among the
 * lowest 100 free subnets (IPv4 and IPv6 independently). Pure; runs in time
 * linear in the number of leases.
 *
 * @param leases every current lease of the network (e.g. a `Map`'s values).
 * @param random a number in [0, 1), e.g. `Math.random`.
 * @throws SubnetExhaustedError (`out of subnets`) when no subnet is free.
 * @throws ConfigError when IPv4 is disabled: a registry lease always has an IPv4 subnet.
 */
export function chooseSubnet(
  config: NetworkConfig,
  leases: Iterable<Lease>,
  attrs: LeaseAttrs,
  previous: PreviousSubnets | undefined,
  random: () => number,
): AllocationDecision {
  if (!config.enableIPv4) {
    throw new ConfigError(
      'IPv6-only networks are not supported by this registry',
      'EnableIPv4',
      false,
    )
  }
  const all = [...leases]
  const mine = all.find((l) => l.attrs.publicIP === attrs.publicIP)
  if (mine !== undefined && isCompatible(config, mine.subnet, mine.ipv6Subnet)) {
    return { kind: 'reuse', lease: mine }
  }
  const others = mine === undefined ? all : all.filter((l) => l !== mine)
  const stale = mine !== undefined ? { stale: mine } : {}
  const prev = previousCandidate(config, others, previous)
  if (prev !== undefined) return { kind: 'create', source: 'previous', ...prev, ...stale }
  const free4 = freeSubnets(config, others)
  const free6 = freeIpv6Subnets(config, others)
  if (free4.length === 0 || (config.enableIPv6 && free6.length === 0)) {
    throw new SubnetExhaustedError()
  }
  const subnet = pick(free4, random)
  const ipv6Subnet = config.enableIPv6 ? pick(free6, random) : undefined
  return { kind: 'create', source: 'random', subnet, ipv6Subnet, ...stale }
}
