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
