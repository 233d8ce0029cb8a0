/** A minimal SubnetRegistry for unit tests: hands out one fixed lease. */
import {
  Ip4Net,
  Ip6Net,
  type Lease,
  type LeaseAttrs,
  type NetworkConfig,
  type SubnetRegistry,
} from '@flannel/core'
import { NEVER, type Observable } from 'rxjs'

export class FixedLeaseRegistry implements SubnetRegistry {
  readonly acquired: LeaseAttrs[] = []
  readonly released: Lease[] = []
  /** Called while acquiring (e.g. to abort in the middle). */
  onAcquire: () => void = () => {}

  constructor(
    private readonly config: NetworkConfig,
    private readonly subnet = '10.244.1.0/24',
    private readonly ipv6Subnet?: string,
  ) {}

  async getNetworkConfig(): Promise<NetworkConfig> {
    return this.config
  }

  async acquireLease(attrs: LeaseAttrs): Promise<Lease> {
    this.acquired.push(attrs)
    this.onAcquire()
    return {
      subnet: Ip4Net.parse(this.subnet),
      ...(this.ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(this.ipv6Subnet) } : {}),
      attrs,
      expiration: new Date(Date.now() + 86_400_000),
    }
  }

  async renewLease(lease: Lease): Promise<Lease> {
    return lease
  }

  async releaseLease(lease: Lease): Promise<void> {
    this.released.push(lease)
  }

  watchLeases(): Observable<never> {
    return NEVER
  }

  async close(): Promise<void> {}
}

/** A peer lease. */
export function peer(
  subnet: string,
  publicIP: string,
  backendType = 'host-gw',
  v6?: { subnet: string; ip: string },
): Lease {
  return {
    subnet: Ip4Net.parse(subnet),
    ...(v6 ? { ipv6Subnet: Ip6Net.parse(v6.subnet) } : {}),
    attrs: { publicIP, backendType, ...(v6 ? { publicIPv6: v6.ip } : {}) },
    expiration: new Date(Date.now() + 86_400_000),
  }
}
