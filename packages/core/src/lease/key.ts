import { InvalidArgumentError } from '../errors.js'
import { Ip4Net, isIp4, parseIp4 } from '../ip/ip4.js'
import { Ip6Net, isIp6, parseIp6 } from '../ip/ip6.js'

/**
 * The etcd key basename of a lease (spec: core.md section 4.1):
 * `10.5.34.0-24`, or `10.12.13.0-24&fd00:12:13::-56` with an IPv6 subnet.
 */
export function subnetKey(subnet: Ip4Net, ipv6Subnet?: Ip6Net): string {
  return ipv6Subnet === undefined ? subnet.toKey() : `${subnet.toKey()}&${ipv6Subnet.toKey()}`
}

// flanneld's pattern, anchored only at the end so a full key path also
// matches; the 2nd and 3rd dots are deliberately unescaped, as upstream.
const SUBNET_KEY_RE = /(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$/

/** The subnets named by a lease key, as returned by {@link parseSubnetKey}. */
export interface SubnetKey {
  /** The IPv4 subnet (as written; host bits are not cleared). */
  readonly subnet: Ip4Net
  /** The IPv6 subnet of a dual-stack key. */
  readonly ipv6Subnet?: Ip6Net | undefined
}

/**
 * Parses a lease key (its basename or the whole path) exactly as flanneld
 * does: the IPv4 prefix must be 0..31 and the IPv6 prefix 0..127.
 *
 * @throws InvalidArgumentError (field `subnet key`) when flanneld would ignore the key.
 */
export function parseSubnetKey(name: string): SubnetKey {
  const bad = (reason: string): never => {
    throw new InvalidArgumentError('subnet key', name, reason)
  }
  const m = SUBNET_KEY_RE.exec(name)
  if (m === null) return bad('does not match <a.b.c.d>-<len>[&<ipv6>-<len>]')
  const [, ip4, len4, ip6, len6] = m as unknown as [string, string, string, string?, string?]
  if (!isIp4(ip4)) bad(`${ip4} is not an IPv4 address`)
  const prefix4 = Number(len4)
  if (prefix4 > 31) bad(`IPv4 prefix length ${len4} does not fit in 5 bits`)
  const subnet = new Ip4Net(parseIp4(ip4), prefix4)
  if (ip6 === undefined || len6 === undefined) return { subnet }
  if (!isIp6(ip6)) bad(`${ip6} is not an IPv6 address`)
  const prefix6 = Number(len6)
  if (prefix6 > 127) bad(`IPv6 prefix length ${len6} does not fit in 7 bits`)
  return { subnet, ipv6Subnet: new Ip6Net(parseIp6(ip6), prefix6) }
}

// The canonical form of a lease, shared by every registry (etcd, memory,
// Kubernetes). flanneld parses a key such as `10.244.85.5-24` without clearing
// the host bits and keeps it as a lease of its own, distinct from the real
// `10.244.85.0-24`; only the kernel saves it, by refusing a route whose
// destination has host bits set. We clear host bits when we build routes, so
// such a key would name the same destination as a real lease and take over
// (then delete) its entries. The same goes for any other spelling of a
// subnet flanneld would never write (`010.…`, `…-024`, an IPv6 part not in
// canonical text, junk before the address, which the end-anchored pattern
// lets through). So a registry takes a key for a lease only when it is
// exactly the key flanneld writes for subnets without host bits; any other
// key is skipped like a key that does not parse.

/**
 * Why `subnets` cannot be a lease's subnets: the IPv4 or the IPv6 subnet has
 * host bits set. Undefined when both are clean.
 *
 * @example
 * ```ts
 * hostBitsProblem({ subnet: new Ip4Net(parseIp4('10.244.85.5'), 24) })
 * // '10.244.85.5/24 has host bits set (the subnet is 10.244.85.0/24)'
 * ```
 */
export function hostBitsProblem(subnets: SubnetKey): string | undefined {
  for (const net of [subnets.subnet, subnets.ipv6Subnet]) {
    if (net === undefined) continue
    const masked = net.masked()
    if (masked !== net)
      return `${net.toString()} has host bits set (the subnet is ${masked.toString()})`
  }
  return undefined
}

/** True when the lease's IPv4 and IPv6 subnets have no host bits set. */
export function isCanonicalLease(lease: SubnetKey): boolean {
  return hostBitsProblem(lease) === undefined
}

/**
 * Throws when `subnets` have host bits set. Registries call it on every lease
 * handed to them (renew, release, reserve) and on subnets read from elsewhere
 * than a key (a Kubernetes podCIDR).
 *
 * @param field - the name to put in the error, e.g. `lease` or `podCIDR`.
 * @throws InvalidArgumentError naming `field` and the subnets.
 */
export function requireCanonicalSubnets(subnets: SubnetKey, field = 'lease'): void {
  const problem = hostBitsProblem(subnets)
  if (problem !== undefined) {
    throw new InvalidArgumentError(field, subnetKey(subnets.subnet, subnets.ipv6Subnet), problem)
  }
}

/**
 * Parses a lease key basename (the part after `<prefix>/subnets/`) the way
 * every registry reads keys: as {@link parseSubnetKey}, and only when it is
 * exactly the key flanneld writes for those subnets and they have no host
 * bits set. flanneld itself takes `10.244.85.5-24` as a lease; see the
 * package README for why we do not.
 *
 * @example
 * ```ts
 * parseLeaseKey('10.244.85.0-24').subnet.toString() // '10.244.85.0/24'
 * parseLeaseKey('10.244.85.5-24') // throws: host bits set
 * ```
 * @throws InvalidArgumentError (field `subnet key`, the key as value) for any other key.
 */
export function parseLeaseKey(name: string): SubnetKey {
  const subnets = parseSubnetKey(name)
  const problem = hostBitsProblem(subnets)
  if (problem !== undefined) throw new InvalidArgumentError('subnet key', name, problem)
  const canonical = subnetKey(subnets.subnet, subnets.ipv6Subnet)
  if (canonical !== name) {
    throw new InvalidArgumentError(
      'subnet key',
      name,
      `not in the form flanneld writes for these subnets (${canonical})`,
    )
  }
  return subnets
}
