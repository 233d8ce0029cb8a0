import { firstValueFrom, from, toArray } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  Ip4Net,
  Ip6Net,
  isOwnSubnet,
  leasesOverlap,
  parseIp4,
  parseNetworkConfig,
  withoutOwnLease,
  type Lease,
  type LeaseEvent,
  type PeerLeaseOptions,
} from '@flannel/core'

function lease(subnet: string | Ip4Net, ipv6Subnet?: string, publicIP = '192.0.2.1'): Lease {
  return {
    subnet: typeof subnet === 'string' ? Ip4Net.parse(subnet) : subnet,
    ...(ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(ipv6Subnet) } : {}),
    attrs: { publicIP },
    expiration: new Date(0),
  }
}

const own = lease('10.5.1.0/24', 'fd00:5:0:1::/64')
const added = (l: Lease): LeaseEvent => ({ type: 'added', lease: l })
const removed = (l: Lease): LeaseEvent => ({ type: 'removed', lease: l })
const show = (batches: LeaseEvent[][]): string[][] =>
  batches.map((b) =>
    b.map(
      (e) => `${e.type} ${e.lease.subnet}${e.lease.ipv6Subnet ? `&${e.lease.ipv6Subnet}` : ''}`,
    ),
  )

function through(batches: LeaseEvent[][], options?: PeerLeaseOptions, me = own) {
  return firstValueFrom(from(batches).pipe(withoutOwnLease(me, options), toArray()))
}

describe('isOwnSubnet', () => {
  it('is true for any lease that overlaps the own IPv4 subnet, or the own IPv6 subnet', () => {
    expect(isOwnSubnet(lease('10.5.1.0/24'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.1.0/24', 'fd00:5:0:1::/64'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.1.0/24', 'fd00:5:0:2::/64'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.1.128/25'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.0.0/16'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.9.0/24', 'fd00:5::/48'), own)).toBe(true)
    expect(isOwnSubnet(lease('10.5.2.0/24'), own)).toBe(false)
    expect(isOwnSubnet(lease('10.5.2.0/24', 'fd00:5:0:2::/64'), own)).toBe(false)
  })

  it('does not compare an own subnet that is not set (an IPv6-only host)', () => {
    const v6only = lease(Ip4Net.EMPTY, 'fd00:5:0:1::/64')
    expect(isOwnSubnet(lease(Ip4Net.EMPTY, 'fd00:5:0:2::/64'), v6only)).toBe(false)
    expect(isOwnSubnet(lease(Ip4Net.EMPTY, 'fd00:5:0:1::/64'), v6only)).toBe(true)
  })
})

describe('leasesOverlap', () => {
  it('compares IPv4 and IPv6 subnets, skipping a family either lease lacks', () => {
    expect(leasesOverlap(lease('10.5.2.0/24'), lease('10.5.2.0/25'))).toBe(true)
    expect(leasesOverlap(lease('10.5.2.0/24'), lease('10.5.3.0/24'))).toBe(false)
    expect(
      leasesOverlap(lease(Ip4Net.EMPTY, 'fd00::/64'), lease(Ip4Net.EMPTY, 'fd00:0:0:1::/64')),
    ).toBe(false)
    expect(
      leasesOverlap(lease('10.5.2.0/24', 'fd00::/64'), lease('10.5.3.0/24', 'fd00::/56')),
    ).toBe(true)
  })
})

describe('withoutOwnLease', () => {
  it('drops the own lease, keeps the first batch even when empty, drops later empty ones', async () => {
    const peer = lease('10.5.2.0/24')
    const batches = await through([
      [added(own)],
      [added(own)],
      [added(peer), added(own)],
      [removed(peer)],
    ])
    expect(show(batches)).toEqual([[], ['added 10.5.2.0/24'], ['removed 10.5.2.0/24']])
  })

  it('drops leases with host bits set, on the own subnet, or (with the config) outside the network, saying why', async () => {
    const config = parseNetworkConfig({
      Network: '10.5.0.0/16',
      EnableIPv6: true,
      IPv6Network: 'fd00:5::/48',
    })
    const ignored: string[] = []
    const hostBits = lease(new Ip4Net(parseIp4('10.5.2.5'), 24))
    const batches = await through(
      [
        [
          added(hostBits),
          added(lease('10.5.1.128/25')), // inside the own subnet
          added(lease('10.5.0.0/16')), // around it
          added(lease('10.5.3.0/24', 'fd00:5:0:1::/64')), // the own IPv6 subnet
          added(lease('192.0.2.0/24')), // the underlay
          added(lease('0.0.0.0/0')),
          added(lease('10.5.4.0/24', 'fd00:9::/64')), // IPv6 outside IPv6Network
          added(lease('10.5.2.0/24', 'fd00:5:0:2::/64')),
        ],
        [removed(hostBits), removed(lease('10.5.1.128/25'))],
      ],
      { config, onIgnored: (l, reason) => ignored.push(`${l.subnet} ${reason}`) },
    )
    expect(show(batches)).toEqual([['added 10.5.2.0/24&fd00:5:0:2::/64']])
    expect(ignored).toEqual([
      '10.5.2.5/24 not a lease: 10.5.2.5/24 has host bits set (the subnet is 10.5.2.0/24)',
      "10.5.1.128/25 10.5.1.128-25 overlaps this host's own subnet 10.5.1.0-24&fd00:5:0:1::-64",
      "10.5.0.0/16 10.5.0.0-16 overlaps this host's own subnet 10.5.1.0-24&fd00:5:0:1::-64",
      "10.5.3.0/24 10.5.3.0-24&fd00:5:0:1::-64 overlaps this host's own subnet 10.5.1.0-24&fd00:5:0:1::-64",
      '192.0.2.0/24 192.0.2.0/24 lies outside the network 10.5.0.0/16',
      "0.0.0.0/0 0.0.0.0-0 overlaps this host's own subnet 10.5.1.0-24&fd00:5:0:1::-64",
      '10.5.4.0/24 fd00:9::/64 lies outside the IPv6 network fd00:5::/48',
      '10.5.2.5/24 not a lease: 10.5.2.5/24 has host bits set (the subnet is 10.5.2.0/24)',
      "10.5.1.128/25 10.5.1.128-25 overlaps this host's own subnet 10.5.1.0-24&fd00:5:0:1::-64",
    ])
  })

  it('lets the first lease of a subnet own it: overlapping leases wait, their removals change nothing', async () => {
    const peer = lease('10.5.2.0/24', undefined, '192.0.2.2')
    const alias = lease('10.5.2.0/24', 'fd00:5:0:9::/64', '192.0.2.66') // another key, same IPv4 subnet
    const half = lease('10.5.2.128/25', undefined, '192.0.2.67')
    const wide = lease('10.5.2.0/23', undefined, '192.0.2.68')
    const batches = await through([
      [added(peer)],
      [added(alias), added(half), added(wide)],
      [removed(alias)],
      [added(lease('10.5.2.0/24', undefined, '192.0.2.22'))], // the owner's new value passes
      [removed(peer)], // the owner goes: the oldest waiting lease that fits takes over
      [removed(wide)],
      [removed(half)],
    ])
    expect(show(batches)).toEqual([
      ['added 10.5.2.0/24'],
      ['added 10.5.2.0/24'],
      ['removed 10.5.2.0/24', 'added 10.5.2.128/25'],
      ['removed 10.5.2.128/25'],
    ])
    expect(batches[1]![0]!.lease.attrs.publicIP).toBe('192.0.2.22')
  })

  it('passes on a removal only for a lease it passed on', async () => {
    const batches = await through([
      [],
      [removed(lease('10.5.7.0/24'))],
      [added(lease('10.5.8.0/24'))],
    ])
    expect(show(batches)).toEqual([[], ['added 10.5.8.0/24']])
  })

  it('applied twice gives what applied once gives', async () => {
    const peer = lease('10.5.2.0/24')
    const input = [
      [added(peer), added(lease('10.5.2.0/25'))],
      [removed(peer), added(lease('10.5.3.0/24'))],
    ]
    const once = await through(input)
    const twice = await firstValueFrom(
      from(input).pipe(withoutOwnLease(own), withoutOwnLease(own), toArray()),
    )
    expect(show(twice)).toEqual(show(once))
  })
})
