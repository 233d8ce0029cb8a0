import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, Ip4Net, Ip6Net, parseSubnetKey, subnetKey } from '@flannel/core'

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
