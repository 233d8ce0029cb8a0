import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  ConfigError,
  Ip4Net,
  Ip6Net,
  SubnetExhaustedError,
  parseNetworkConfig,
  type Lease,
  type LeaseAttrs,
} from '@flannel/core'
import { chooseSubnet, freeSubnets, isCompatible } from '@flannel/core/registry'

const EXPIRES = new Date('2026-01-02T00:00:00Z')
const net = (cidr: string): Ip4Net => Ip4Net.parse(cidr)
const lease = (cidr: string, publicIP = '198.51.100.1', ipv6?: string): Lease => ({
  subnet: net(cidr),
  ...(ipv6 ? { ipv6Subnet: Ip6Net.parse(ipv6) } : {}),
  attrs: { publicIP },
  expiration: EXPIRES,
})
const ME: LeaseAttrs = { publicIP: '192.0.2.7', backendType: 'vxlan' }
const first = (): number => 0
const last = (): number => 0.999999

// flanneld's mock-registry case (spec: interop/test list, pkg/subnet/etcd/subnet_test.go).
const UPSTREAM = parseNetworkConfig(
  '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.0","SubnetMax":"10.3.25.0"}',
)
const UPSTREAM_LEASES = [
  '10.3.1.0/24',
  '10.3.2.0/24',
  '10.3.4.0/24',
  '10.3.5.0/24',
  '10.3.31.0/24',
].map((c) => lease(c, '1.1.1.1'))

describe('isCompatible', () => {
  const config = parseNetworkConfig('{"Network":"10.5.0.0/16"}')
  it('accepts subnets of SubnetLen inside SubnetMin..SubnetMax', () => {
    expect(isCompatible(config, net('10.5.1.0/24'))).toBe(true)
    expect(isCompatible(config, net('10.5.255.0/24'))).toBe(true)
  })
  it('rejects the first subnet, other prefixes, other networks', () => {
    expect(isCompatible(config, net('10.5.0.0/24'))).toBe(false)
    expect(isCompatible(config, net('10.5.4.0/23'))).toBe(false)
    expect(isCompatible(config, net('10.6.1.0/24'))).toBe(false)
  })
  it('requires an IPv6 subnet exactly when IPv6 is on', () => {
    expect(isCompatible(config, net('10.5.1.0/24'), Ip6Net.parse('fc00:0:0:1::/64'))).toBe(false)
    const dual = parseNetworkConfig(
      '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}',
    )
    expect(isCompatible(dual, net('10.5.1.0/24'))).toBe(false)
    expect(isCompatible(dual, net('10.5.1.0/24'), Ip6Net.parse('fc00:0:0:1::/64'))).toBe(true)
    expect(isCompatible(dual, net('10.5.1.0/24'), Ip6Net.parse('fc00:0:0:1::/56'))).toBe(false)
  })
})

describe('chooseSubnet', () => {
  it('picks the lowest free subnet in range with random 0 and skips held ones', () => {
    const d = chooseSubnet(UPSTREAM, UPSTREAM_LEASES, ME, undefined, first)
    expect(d).toMatchObject({ kind: 'create', source: 'random' })
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.3.3.0/24')
  })
  it('picks among the free subnets up to SubnetMax with random near 1', () => {
    const d = chooseSubnet(UPSTREAM, UPSTREAM_LEASES, ME, undefined, last)
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.3.25.0/24')
  })
  it('reuses the compatible lease carrying our PublicIP', () => {
    const mine = lease('10.3.9.0/24', ME.publicIP)
    const d = chooseSubnet(
      UPSTREAM,
      [...UPSTREAM_LEASES, mine],
      ME,
      { subnet: net('10.3.6.0/24') },
      first,
    )
    expect(d).toEqual({ kind: 'reuse', lease: mine })
  })
  it('marks our incompatible lease stale and allocates anew', () => {
    const mine = lease('10.3.30.0/24', ME.publicIP)
    const d = chooseSubnet(UPSTREAM, [...UPSTREAM_LEASES, mine], ME, undefined, first)
    expect(d).toMatchObject({ kind: 'create', source: 'random', stale: mine })
  })
  it('takes a free compatible previous subnet', () => {
    const d = chooseSubnet(UPSTREAM, UPSTREAM_LEASES, ME, { subnet: net('10.3.6.0/24') }, first)
    expect(d).toMatchObject({ kind: 'create', source: 'previous' })
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.3.6.0/24')
  })
  it('ignores a previous subnet held by another host or outside the config', () => {
    for (const prev of ['10.3.4.0/24', '10.4.1.0/24', '10.3.26.0/24']) {
      const d = chooseSubnet(UPSTREAM, UPSTREAM_LEASES, ME, { subnet: net(prev) }, first)
      expect(d).toMatchObject({ kind: 'create', source: 'random' })
    }
  })
  it('skips every subnet overlapped by a shorter-prefix lease (a reservation)', () => {
    const config = parseNetworkConfig('{"Network":"10.0.0.0/8"}')
    const d = chooseSubnet(config, [lease('10.0.0.0/9')], ME, undefined, first)
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.128.0.0/24')
  })
  it('considers only the lowest 100 free subnets', () => {
    const config = parseNetworkConfig('{"Network":"10.5.0.0/16"}')
    const d = chooseSubnet(config, [], ME, undefined, last)
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.5.100.0/24')
    expect(freeSubnets(config, [])).toHaveLength(100)
  })
  it('picks IPv6 subnets too in dual-stack mode', () => {
    const dual = parseNetworkConfig(
      '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fc00::/48"}',
    )
    const d = chooseSubnet(
      dual,
      [lease('10.5.1.0/24', '1.1.1.1', 'fc00:0:0:1::/64')],
      ME,
      undefined,
      first,
    )
    expect(d.kind === 'create' && `${d.subnet} ${d.ipv6Subnet}`).toBe('10.5.2.0/24 fc00:0:0:2::/64')
  })
  it("throws flanneld's 'out of subnets' when the range is full", () => {
    const small = parseNetworkConfig('{"Network":"10.1.0.0/28"}') // /30s, 10.1.0.4 .. 10.1.0.12
    const full = ['10.1.0.4/30', '10.1.0.8/30', '10.1.0.12/30'].map((c) => lease(c))
    expect(() => chooseSubnet(small, full, ME, undefined, first)).toThrow(SubnetExhaustedError)
    expect(() => chooseSubnet(small, full, ME, undefined, first)).toThrow(/^out of subnets$/)
  })
  it('rejects IPv6-only configs with a typed error', () => {
    const v6 = parseNetworkConfig(
      '{"EnableIPv4":false,"EnableIPv6":true,"IPv6Network":"fc00::/48"}',
    )
    expect(() => chooseSubnet(v6, [], ME, undefined, first)).toThrow(ConfigError)
  })
  it('handles 60k leases (linear-time search)', () => {
    const config = parseNetworkConfig('{"Network":"10.0.0.0/8"}')
    const many: Lease[] = []
    for (let i = 1; i <= 60_000; i++)
      many.push({ ...lease('10.0.0.0/24'), subnet: new Ip4Net(0x0a000000 + i * 256, 24) })
    const d = chooseSubnet(config, many, ME, undefined, first)
    expect(d.kind === 'create' && d.subnet.toString()).toBe('10.234.97.0/24')
  })
})

describe('chooseSubnet properties', () => {
  // A /20 network of /28 subnets (256 subnets, 255 allocatable) keeps cases small but full ranges reachable.
  const config = parseNetworkConfig('{"Network":"10.7.0.0/20","SubnetLen":28}')
  const min = config.subnetMin!.ip
  const max = config.subnetMax!.ip
  const takenNet = fc
    .tuple(fc.integer({ min: 0, max: 4095 }), fc.integer({ min: 18, max: 30 }))
    .map(([offset, len]) => new Ip4Net(0x0a070000 + offset, len).masked())
  const leasesArb = fc.array(takenNet, { maxLength: 300 }).map((nets) =>
    nets.map(
      (subnet, i): Lease => ({
        subnet,
        attrs: { publicIP: `198.51.100.${i % 250}` },
        expiration: EXPIRES,
      }),
    ),
  )
  const randomArb = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true })

  it('never returns an overlapping, misaligned or out-of-range subnet, and fails only when nothing is free', () => {
    fc.assert(
      fc.property(leasesArb, randomArb, (leases, r) => {
        let anyFree = false
        for (let ip = min; ip <= max; ip += 16) {
          const candidate = new Ip4Net(ip, 28)
          if (!leases.some((l) => l.subnet.overlaps(candidate))) anyFree = true
        }
        let decision
        try {
          decision = chooseSubnet(config, leases, ME, undefined, () => r)
        } catch (e) {
          expect(e).toBeInstanceOf(SubnetExhaustedError)
          expect(anyFree).toBe(false)
          return
        }
        expect(anyFree).toBe(true)
        expect(decision.kind).toBe('create')
        if (decision.kind !== 'create') return
        const s = decision.subnet
        expect(s.prefixLength).toBe(28)
        expect(s.ip % 16).toBe(0)
        expect(s.ip >= min && s.ip <= max).toBe(true)
        expect(leases.some((l) => l.subnet.overlaps(s))).toBe(false)
      }),
      { numRuns: 300 },
    )
  })

  it('always picks within the lowest 100 free subnets', () => {
    fc.assert(
      fc.property(leasesArb, randomArb, (leases, r) => {
        const free = freeSubnets(config, leases)
        for (let i = 1; i < free.length; i++) expect(free[i]!.ip).toBeGreaterThan(free[i - 1]!.ip)
        if (free.length === 0) return
        const d = chooseSubnet(config, leases, ME, undefined, () => r)
        expect(d.kind === 'create' && free.some((f) => f.equals(d.subnet))).toBe(true)
      }),
      { numRuns: 200 },
    )
  })

  it('in dual-stack mode never returns an overlapping or out-of-range IPv6 subnet', () => {
    const dual = parseNetworkConfig(
      '{"Network":"10.8.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:1::/56","IPv6SubnetLen":60}',
    )
    const base = dual.ipv6Network!.ip
    const v6Arb = fc
      .array(fc.tuple(fc.integer({ min: 0, max: 15 }), fc.integer({ min: 56, max: 64 })), {
        maxLength: 20,
      })
      .map((list) =>
        list.map(
          ([n, len], i): Lease => ({
            subnet: new Ip4Net(0x0a080000 + (i + 1) * 256, 24),
            ipv6Subnet: new Ip6Net(base + (BigInt(n) << 68n), len).masked(),
            attrs: { publicIP: `198.51.100.${i + 1}` },
            expiration: EXPIRES,
          }),
        ),
      )
    fc.assert(
      fc.property(v6Arb, randomArb, (leases, r) => {
        let decision
        try {
          decision = chooseSubnet(dual, leases, ME, undefined, () => r)
        } catch (e) {
          expect(e).toBeInstanceOf(SubnetExhaustedError)
          return
        }
        if (decision.kind !== 'create') throw new Error('unexpected reuse')
        const s6 = decision.ipv6Subnet!
        expect(s6.prefixLength).toBe(60)
        expect(s6.ip >= dual.ipv6SubnetMin!.ip && s6.ip <= dual.ipv6SubnetMax!.ip).toBe(true)
        expect(leases.some((l) => l.ipv6Subnet!.overlaps(s6))).toBe(false)
      }),
      { numRuns: 200 },
    )
  })
})
