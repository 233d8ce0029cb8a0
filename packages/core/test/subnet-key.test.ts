import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, Ip4Net, Ip6Net, parseIp4, parseIp6 } from '@flannel/core'
import {
  hostBitsProblem,
  isCanonicalLease,
  parseLeaseKey,
  parseSubnetKey,
  requireCanonicalSubnets,
  subnetKey,
} from '@flannel/core/registry'

describe('subnetKey', () => {
  it('builds the IPv4 key basename', () => {
    expect(subnetKey(Ip4Net.parse('10.5.34.0/24'))).toBe('10.5.34.0-24')
  })

  it('builds the dual-stack key with the IPv6 part in canonical text', () => {
    expect(subnetKey(Ip4Net.parse('10.12.13.0/24'), Ip6Net.parse('FD00:12:13:0::/56'))).toBe(
      '10.12.13.0-24&fd00:12:13::-56',
    )
  })
})

describe('parseSubnetKey', () => {
  it.each(['10.12.13.0-24', '10.12.13.0-24&fd00:12:13::-56', '10.5.34.0-0', '0.0.0.0-31'])(
    'round-trips %s',
    (key) => {
      const { subnet, ipv6Subnet } = parseSubnetKey(key)
      expect(subnetKey(subnet, ipv6Subnet)).toBe(key)
    },
  )

  it('returns the subnets', () => {
    const parsed = parseSubnetKey('10.12.13.0-24&fd00:12:13::-56')
    expect(parsed.subnet.toString()).toBe('10.12.13.0/24')
    expect(parsed.ipv6Subnet?.toString()).toBe('fd00:12:13::/56')
    expect(parseSubnetKey('10.12.13.0-24').ipv6Subnet).toBeUndefined()
  })

  it('accepts a whole key path, the pattern being anchored only at the end', () => {
    expect(parseSubnetKey('/coreos.com/network/subnets/10.5.52.0-24').subnet.toString()).toBe(
      '10.5.52.0/24',
    )
  })

  it.each([
    // upstream's rejected examples (core.md 4.1)
    '10',
    '10.12.13.0',
    '10.12.13-24',
    '10.12.13.300-24',
    '10.12.13.0-24hi',
    '&2001::-56',
    '10.12.13.0-24&:12:13:-56',
    '10.12.13.0-24&20011::-56',
    '10.12.13.0-24&2001-56',
    '10.12.13.0-24&2001::',
    '10.12.13.0-24&2001::-56hi',
    // prefix lengths that do not fit flanneld's 5 / 7 bit fields
    '10.12.13.0-32',
    '10.12.13.0-24&fd00::-128',
    // the unescaped dots match any character, but the address must still parse
    '10.12x13x0-24',
    '',
    'garbage',
  ])('rejects %j', (key) => {
    expect(() => parseSubnetKey(key)).toThrow(InvalidArgumentError)
  })
})

describe('parseLeaseKey (the canonical form every registry accepts)', () => {
  it.each(['10.244.85.0-24', '10.12.13.0-24&fd00:12:13::-56', '10.5.34.0-31', '0.0.0.0-0'])(
    'accepts %s',
    (key) => {
      const { subnet, ipv6Subnet } = parseLeaseKey(key)
      expect(subnetKey(subnet, ipv6Subnet)).toBe(key)
    },
  )

  it.each([
    ['10.244.85.5-24', '10.244.85.5/24 has host bits set (the subnet is 10.244.85.0/24)'],
    ['10.244.1.1-16', '10.244.1.1/16 has host bits set (the subnet is 10.244.0.0/16)'],
    ['10.5.34.0-0', '10.5.34.0/0 has host bits set (the subnet is 0.0.0.0/0)'],
    ['10.5.1.0-24&fd00:5::1-64', 'fd00:5::1/64 has host bits set (the subnet is fd00:5::/64)'],
    ['10.5.1.0-024', 'not in the form flanneld writes for these subnets (10.5.1.0-24)'],
    [
      '10.5.1.0-24&fd00:0:0:0::-64',
      'not in the form flanneld writes for these subnets (10.5.1.0-24&fd00::-64)',
    ],
    ['junk10.5.1.0-24', 'not in the form flanneld writes for these subnets (10.5.1.0-24)'],
    ['a/10.5.1.0-24', 'not in the form flanneld writes for these subnets (10.5.1.0-24)'],
  ])('rejects %s, naming the key and why', (key, reason) => {
    // flanneld's own parser takes every one of these keys
    expect(() => parseSubnetKey(key)).not.toThrow()
    const err = (() => {
      try {
        parseLeaseKey(key)
      } catch (e) {
        return e
      }
      return undefined
    })()
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect(err).toMatchObject({ field: 'subnet key', value: key })
    expect((err as Error).message).toBe(`invalid subnet key ${JSON.stringify(key)}: ${reason}`)
  })

  it('rejects what parseSubnetKey rejects', () => {
    expect(() => parseLeaseKey('garbage')).toThrow(InvalidArgumentError)
    expect(() => parseLeaseKey('10.12.13.0-32')).toThrow(InvalidArgumentError)
  })
})

describe('hostBitsProblem, isCanonicalLease, requireCanonicalSubnets', () => {
  const unmasked = new Ip4Net(parseIp4('10.244.85.5'), 24)
  it('tell clean subnets from subnets with host bits', () => {
    expect(hostBitsProblem({ subnet: Ip4Net.parse('10.244.85.0/24') })).toBeUndefined()
    expect(isCanonicalLease({ subnet: Ip4Net.parse('10.244.85.0/24') })).toBe(true)
    expect(isCanonicalLease({ subnet: unmasked })).toBe(false)
    expect(
      isCanonicalLease({
        subnet: Ip4Net.parse('10.244.85.0/24'),
        ipv6Subnet: new Ip6Net(parseIp6('fd00::1'), 64),
      }),
    ).toBe(false)
  })

  it('requireCanonicalSubnets throws an InvalidArgumentError naming the field and the subnets', () => {
    expect(() => requireCanonicalSubnets({ subnet: Ip4Net.parse('10.5.1.0/24') })).not.toThrow()
    expect(() => requireCanonicalSubnets({ subnet: unmasked }, 'podCIDR')).toThrow(
      'invalid podCIDR "10.244.85.5-24": 10.244.85.5/24 has host bits set (the subnet is 10.244.85.0/24)',
    )
  })
})
