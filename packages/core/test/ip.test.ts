import { describe, expect, it } from 'vitest'
import { InvalidArgumentError, Ip4Net, Ip6Net, parseIp4 } from '@flannel/core'

describe('Ip4Net', () => {
  it('masks host bits and prints the CIDR and etcd key forms', () => {
    const net = Ip4Net.parse('10.5.34.7/24')
    expect(net.toString()).toBe('10.5.34.0/24')
    expect(net.toKey()).toBe('10.5.34.0-24')
    expect(JSON.stringify({ net })).toBe('{"net":"10.5.34.0/24"}')
  })

  it('steps to the next subnet and wraps at the top of the space', () => {
    expect(Ip4Net.parse('10.5.255.0/24').next().toString()).toBe('10.6.0.0/24')
    expect(Ip4Net.parse('255.255.255.0/24').next().toString()).toBe('0.0.0.0/24')
  })

  it('answers contains and overlaps', () => {
    const net = Ip4Net.parse('10.5.0.0/16')
    expect(net.contains('10.5.200.1')).toBe(true)
    expect(net.contains('10.6.0.1')).toBe(false)
    expect(net.overlaps(Ip4Net.parse('10.0.0.0/8'))).toBe(true)
    expect(net.overlaps(Ip4Net.parse('10.6.0.0/16'))).toBe(false)
  })

  it('treats 0.0.0.0/0 as empty', () => {
    expect(Ip4Net.EMPTY.isEmpty).toBe(true)
    expect(Ip4Net.parse('0.0.0.0/8').isEmpty).toBe(false)
  })

  it.each(['10.5.0.0', '10.5.0.0/33', '10.05.0.0/16', '256.1.1.1/8', '10.5.0.0/x', ''])(
    'rejects %j with a typed error naming the value',
    (text) => {
      const error = (() => {
        try {
          Ip4Net.parse(text, 'Network')
        } catch (e) {
          return e
        }
      })()
      expect(error).toBeInstanceOf(InvalidArgumentError)
      expect((error as InvalidArgumentError).message).toContain('Network')
    },
  )

  it('parses addresses as unsigned 32-bit numbers', () => {
    expect(parseIp4('255.255.255.255')).toBe(0xffffffff)
    expect(parseIp4('192.0.2.1')).toBe(0xc0000201)
  })
})

describe('Ip6Net', () => {
  it('prints canonical text and the etcd key form', () => {
    const net = Ip6Net.parse('fc00:0:0:0:0:0:0:0/48')
    expect(net.toString()).toBe('fc00::/48')
    expect(net.toKey()).toBe('fc00::-48')
  })

  it('steps to the next subnet', () => {
    expect(Ip6Net.parse('fc00::/64').next().toString()).toBe('fc00:0:0:1::/64')
  })

  it('answers contains and overlaps', () => {
    const net = Ip6Net.parse('fc00::/48')
    expect(net.contains('fc00::1')).toBe(true)
    expect(net.contains('fc01::1')).toBe(false)
    expect(net.overlaps(Ip6Net.parse('fc00:0:0:5::/64'))).toBe(true)
  })

  it('rejects malformed input with a typed error', () => {
    expect(() => Ip6Net.parse('fc00::/129')).toThrow(InvalidArgumentError)
    expect(() => Ip6Net.parse('10.0.0.0/8')).toThrow(InvalidArgumentError)
  })
})
