import { type LinkAddress } from '@flannel/linux'
import { normalizeCidr } from '@flannel/linux/backend'

/**
 * True when `gateway` lies inside the prefix of one of the interface's own
 * `addresses`, i.e. the kernel accepts it as a next hop without `onlink`.
 * IPv6 link-local next hops are always on-link.
 */
export function onLinkOf(addresses: readonly LinkAddress[], gateway: string): boolean {
  const family = gateway.includes(':') ? 'inet6' : 'inet'
  for (const a of addresses) {
    if (a.family !== family) continue
    const net = normalizeCidr(`${a.address}/${a.prefixLength}`)
    if (normalizeCidr(`${gateway}/${a.prefixLength}`) === net) return true
  }
  return family === 'inet6' && /^fe[89ab]/i.test(gateway)
}
