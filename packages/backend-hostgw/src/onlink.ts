import type { HostNetwork } from '@flannel/linux'
import { normalizeCidr } from '@flannel/linux'

/**
 * True when `gateway` lies inside a prefix of one of the interface's own
 * addresses, i.e. the kernel accepts it as a next hop without `onlink`.
 */
export async function onLink(
  host: HostNetwork,
  linkIndex: number,
  gateway: string,
): Promise<boolean> {
  const family = gateway.includes(':') ? 'inet6' : 'inet'
  const addresses = await host.listAddresses({ linkIndex, family })
  for (const a of addresses) {
    const net = normalizeCidr(`${a.address}/${a.prefixLength}`)
    if (normalizeCidr(`${gateway}/${a.prefixLength}`) === net) return true
  }
  // IPv6 link-local next hops are always on-link.
  return family === 'inet6' && /^fe[89ab]/i.test(gateway)
}
