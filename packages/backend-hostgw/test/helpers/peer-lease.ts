/** Builds peer leases for host-gw tests (registries come from core's MemoryRegistry). */
import { Ip4Net, Ip6Net, type Lease } from '@flannel/core'

/** A peer lease. */
export function peer(
  subnet: string | Ip4Net,
  publicIP: string,
  backendType = 'host-gw',
  v6?: { subnet: string; ip: string },
): Lease {
  return {
    subnet: typeof subnet === 'string' ? Ip4Net.parse(subnet) : subnet,
    ...(v6 ? { ipv6Subnet: Ip6Net.parse(v6.subnet) } : {}),
    attrs: { publicIP, backendType, ...(v6 ? { publicIPv6: v6.ip } : {}) },
    expiration: new Date(Date.now() + 86_400_000),
  }
}
