import {
  Ip4Net,
  Ip6Net,
  formatIp4,
  formatIp6,
  isIp4,
  isIp6,
  parseIp4,
  parseIp6,
  type Lease,
  type LeaseAttrs,
  type NetworkConfig,
} from '@flannel/core'
import { decodeBackendData } from '@flannel/core/registry'
import type { AnnotationKeys } from './annotations.js'
import { PodCidrError } from './errors.js'

/** The parts of a Node this package reads (`core/v1` Node JSON). */
export interface NodeObject {
  readonly metadata?: {
    readonly name?: string
    readonly resourceVersion?: string
    readonly annotations?: Readonly<Record<string, string>> | null
  }
  readonly spec?: {
    readonly podCIDR?: string
    readonly podCIDRs?: readonly string[] | null
  }
}

/** A node's pod CIDRs by family. */
export interface NodeCidrs {
  readonly ipv4?: Ip4Net | undefined
  readonly ipv6?: Ip6Net | undefined
}

/** Go `net.ParseCIDR` of one podCIDR entry, with host bits cleared as Go does. */
function parseCidr(text: string): Ip4Net | Ip6Net | undefined {
  const slash = text.indexOf('/')
  if (slash < 0) return undefined
  const addr = text.slice(0, slash)
  try {
    if (isIp4(addr)) return Ip4Net.parse(text)
    if (isIp6(addr)) return Ip6Net.parse(text)
  } catch {
    return undefined
  }
  return undefined
}

/**
 * The podCIDR entries to look at: `spec.podCIDRs` when it has entries, else
 * `spec.podCIDR`. More than two is flanneld's error.
 */
function cidrTexts(node: NodeObject, nodeName: string): readonly string[] {
  const list = node.spec?.podCIDRs ?? []
  if (list.length === 0) return [node.spec?.podCIDR ?? '']
  if (list.length > 2) {
    throw new PodCidrError(
      nodeName,
      list.join(','),
      `node "${nodeName}" pod cidrs should be IPv4/IPv6 only or dualstack`,
    )
  }
  return list
}

/**
 * The own node's CIDRs as flanneld's `AcquireLease` sorts them (spec:
 * kube.md section 4, step 3): per family the **last** entry wins.
 *
 * @throws PodCidrError for more than two entries or an unparsable one
 *   (`invalid CIDR address: <s>`).
 */
export function ownNodeCidrs(node: NodeObject, nodeName: string): NodeCidrs {
  let ipv4: Ip4Net | undefined
  let ipv6: Ip6Net | undefined
  for (const text of cidrTexts(node, nodeName)) {
    const cidr = parseCidr(text)
    if (cidr === undefined) {
      throw new PodCidrError(nodeName, text, `invalid CIDR address: ${text}`)
    }
    if (cidr instanceof Ip4Net) ipv4 = cidr
    else ipv6 = cidr
  }
  return { ipv4, ipv6 }
}

/** `ones1 <= ones2 && net1.Contains(net2.IP)` (flanneld's `containsCIDR`). */
export function containsCidr(network: Ip4Net | Ip6Net | undefined, cidr: Ip4Net | Ip6Net): boolean {
  if (network === undefined || network.isEmpty) return false
  if (network instanceof Ip4Net && cidr instanceof Ip4Net) {
    return network.prefixLength <= cidr.prefixLength && network.contains(cidr.ip)
  }
  if (network instanceof Ip6Net && cidr instanceof Ip6Net) {
    return network.prefixLength <= cidr.prefixLength && network.contains(cidr.ip)
  }
  return false
}

/**
 * The own lease's subnets: the node's CIDRs checked against the config's
 * networks (spec: kube.md section 4, step 7). A family that is enabled but
 * has no CIDR is left empty (flanneld does not fail here; the backend does).
 *
 * @throws PodCidrError `subnet "<net>" specified in the flannel net config doesn't contain "<cidr>" PodCIDR of the "<n>" node`.
 */
export function ownLeaseSubnets(
  config: NetworkConfig,
  cidrs: NodeCidrs,
  nodeName: string,
): { subnet: Ip4Net; ipv6Subnet: Ip6Net | undefined } {
  let subnet = Ip4Net.EMPTY
  let ipv6Subnet: Ip6Net | undefined
  if (cidrs.ipv4 !== undefined && config.enableIPv4) {
    if (!containsCidr(config.network, cidrs.ipv4)) {
      const net = (config.network ?? Ip4Net.EMPTY).toString()
      throw new PodCidrError(
        nodeName,
        cidrs.ipv4.toString(),
        `subnet "${net}" specified in the flannel net config doesn't contain "${cidrs.ipv4.toString()}" PodCIDR of the "${nodeName}" node`,
      )
    }
    subnet = cidrs.ipv4
  }
  if (cidrs.ipv6 !== undefined && config.enableIPv6) {
    if (!containsCidr(config.ipv6Network, cidrs.ipv6)) {
      const net = (config.ipv6Network ?? Ip6Net.EMPTY).toString()
      throw new PodCidrError(
        nodeName,
        cidrs.ipv6.toString(),
        `subnet "${net}" specified in the flannel net config doesn't contain "${cidrs.ipv6.toString()}" IPv6 PodCIDR of the "${nodeName}" node`,
      )
    }
    ipv6Subnet = cidrs.ipv6
  }
  return { subnet, ipv6Subnet }
}

/** Why a node is not a peer: flanneld's reason text, for the log. */
export type NodeLeaseResult =
  | { readonly ok: true; readonly lease: Lease }
  | { readonly ok: false; readonly reason: string }

const NO_EXPIRY = new Date(0)

/**
 * A peer's lease from its Node, as flanneld's `nodeToLease` builds it (spec:
 * kube.md section 5), or why there is none: no `kube-subnet-manager: "true"`
 * marker, a missing or bad `public-ip(v6)`, no podCIDR of an enabled family,
 * more than two podCIDRs. The **first** CIDR of each family is used, with
 * host bits cleared. Expiration is the zero time (peers never expire).
 *
 * @example
 * ```ts
 * const result = nodeToLease(node, annotationKeys(), config)
 * if (result.ok) console.log(result.lease.subnet.toString())
 * ```
 */
export function nodeToLease(
  node: NodeObject,
  keys: AnnotationKeys,
  config: Pick<NetworkConfig, 'enableIPv4' | 'enableIPv6'>,
): NodeLeaseResult {
  const a = node.metadata?.annotations ?? {}
  const name = node.metadata?.name ?? ''
  if (a[keys.subnetKubeManaged] !== 'true') {
    return { ok: false, reason: `no ${keys.subnetKubeManaged}: "true" annotation` }
  }
  let texts: readonly string[]
  try {
    texts = cidrTexts(node, name)
  } catch (err) {
    return { ok: false, reason: (err as Error).message }
  }
  const first = (family: 4 | 6): Ip4Net | Ip6Net | string => {
    for (const text of texts) {
      const cidr = parseCidr(text)
      if (cidr === undefined) return `invalid CIDR address: ${text}`
      if (cidr instanceof Ip4Net === (family === 4)) return cidr
    }
    return `missing IPv${family} address on n.Spec.PodCIDRs`
  }
  let subnet = Ip4Net.EMPTY
  let ipv6Subnet: Ip6Net | undefined
  let publicIP = '0.0.0.0'
  let publicIPv6: string | undefined
  let backendData: unknown
  let backendV6Data: unknown
  if (config.enableIPv4) {
    const text = a[keys.publicIP] ?? ''
    if (!isIp4(text)) {
      return {
        ok: false,
        reason: isIp6(text) ? 'invalid IPv4 address format' : 'invalid IP address format',
      }
    }
    publicIP = formatIp4(parseIp4(text))
    backendData = decodeBackendData(a[keys.backendData])
    const cidr = first(4)
    if (typeof cidr === 'string') return { ok: false, reason: cidr }
    subnet = cidr as Ip4Net
  }
  if (config.enableIPv6) {
    const text = a[keys.publicIPv6] ?? ''
    if (!isIp6(text)) return { ok: false, reason: 'invalid IP address format' }
    publicIPv6 = formatIp6(parseIp6(text))
    backendV6Data = decodeBackendData(a[keys.backendV6Data])
    const cidr = first(6)
    if (typeof cidr === 'string') return { ok: false, reason: cidr }
    ipv6Subnet = cidr as Ip6Net
  }
  const backendType = a[keys.backendType] ?? ''
  const attrs: LeaseAttrs = {
    publicIP,
    ...(publicIPv6 === undefined ? {} : { publicIPv6 }),
    ...(backendType === '' ? {} : { backendType }),
    ...(backendData === undefined ? {} : { backendData }),
    ...(backendV6Data === undefined ? {} : { backendV6Data }),
  }
  return { ok: true, lease: { subnet, ipv6Subnet, attrs, expiration: NO_EXPIRY } }
}
