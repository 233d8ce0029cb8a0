import { firstValueFrom, from, toArray } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  Ip4Net,
  Ip6Net,
  isOwnSubnet,
  withoutOwnLease,
  type Lease,
  type LeaseEvent,
} from '@flannel/core'

function lease(subnet: string, ipv6Subnet?: string): Lease {
  return {
    subnet: Ip4Net.parse(subnet),
    ...(ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(ipv6Subnet) } : {}),
    attrs: { publicIP: '192.0.2.1' },
    expiration: new Date(0),
  }
}

const own = lease('10.5.1.0/24', 'fd00:5:0:1::/64')
const added = (l: Lease): LeaseEvent => ({ type: 'added', lease: l })

describe('isOwnSubnet', () => {
  it('compares the IPv4 subnet, and the IPv6 one when the lease has it', () => {
    expect(isOwnSubnet(lease('10.5.1.0/24'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.1.0/24', 'fd00:5:0:1::/64'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.1.0/24', 'fd00:5:0:2::/64'), own)).toBe(false)
    expect(isOwnSubnet(lease('10.5.2.0/24'), own)).toBe(false)
  })
})

describe('withoutOwnLease', () => {
  it('drops the own lease, keeps the first batch even when empty, drops later empty ones', async () => {
    const peer = lease('10.5.2.0/24')
    const batches = await firstValueFrom(
      from([
        [added(own)],
        [added(own)],
        [added(peer), added(own)],
        [{ type: 'removed', lease: peer }],
      ] as LeaseEvent[][]).pipe(withoutOwnLease(own), toArray()),
    )
    expect(batches.map((b) => b.map((e) => `${e.type} ${e.lease.subnet}`))).toEqual([
      [],
      ['added 10.5.2.0/24'],
      ['removed 10.5.2.0/24'],
    ])
  })
})
