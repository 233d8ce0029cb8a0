import { isFlannelError } from '@flannel/core'
import { describe, expect, it } from 'vitest'
import {
  ExternalInterfaceError,
  NO_MATCHING_INTERFACE_MESSAGE,
  chooseExternalInterface,
  type InterfaceSnapshot,
  type Link,
} from '../src/index.js'

const link = (index: number, name: string, mtu = 1500): Link => ({ index, name, mtu, up: true })

// lo, eth0 (default route, 192.0.2.10 + link-local), eth1 (198.51.100.7, IPv6), br0 (no address), zero (MTU 0)
const snapshot: InterfaceSnapshot = {
  links: [
    link(1, 'lo', 65536),
    link(2, 'eth0'),
    link(3, 'eth1', 9000),
    link(4, 'br0'),
    link(5, 'zero', 0),
  ],
  addresses: [
    { linkIndex: 1, family: 'inet', address: '127.0.0.1', prefixLength: 8 },
    { linkIndex: 2, family: 'inet', address: '169.254.3.3', prefixLength: 16 },
    { linkIndex: 2, family: 'inet', address: '192.0.2.10', prefixLength: 24 },
    { linkIndex: 2, family: 'inet6', address: 'fe80::10', prefixLength: 64 },
    { linkIndex: 3, family: 'inet', address: '198.51.100.7', prefixLength: 24 },
    { linkIndex: 3, family: 'inet6', address: 'fe80::7', prefixLength: 64 },
    { linkIndex: 3, family: 'inet6', address: '2001:db8::7', prefixLength: 64 },
    { linkIndex: 5, family: 'inet', address: '203.0.113.5', prefixLength: 24 },
  ],
  routes: [
    { family: 'inet', dst: '0.0.0.0/0', gateway: '192.0.2.1', linkIndex: 2 },
    { family: 'inet', dst: '192.0.2.0/24', linkIndex: 2 },
    { family: 'inet', dst: '198.51.100.0/24', linkIndex: 3 },
    { family: 'inet', dst: '203.0.113.0/24', linkIndex: 5 },
    { family: 'inet6', dst: '::/0', gateway: 'fe80::1', linkIndex: 3 },
  ],
}

describe('chooseExternalInterface', () => {
  it('defaults to the interface of the IPv4 default route, global address before link-local', () => {
    expect(chooseExternalInterface(snapshot)).toEqual({
      name: 'eth0',
      index: 2,
      mtu: 1500,
      ifaceAddr: '192.0.2.10',
      extAddr: '192.0.2.10',
    })
  })

  it('--public-ip overrides the published address only', () => {
    expect(
      chooseExternalInterface(snapshot, { iface: ['eth0'], publicIP: '203.0.113.99' }),
    ).toMatchObject({
      name: 'eth0',
      ifaceAddr: '192.0.2.10',
      extAddr: '203.0.113.99',
    })
  })

  it('without --iface flags, --public-ip selects the interface holding it', () => {
    expect(chooseExternalInterface(snapshot, { publicIP: '198.51.100.7' })).toMatchObject({
      name: 'eth1',
      extAddr: '198.51.100.7',
    })
    expect(() => chooseExternalInterface(snapshot, { publicIP: '203.0.113.99' })).toThrow(
      'no interface holds the public IP 203.0.113.99',
    )
  })

  it('--iface: names or addresses in order, first usable wins', () => {
    expect(chooseExternalInterface(snapshot, { iface: ['nope', 'br0', 'eth1', 'eth0'] }).name).toBe(
      'eth1',
    )
    expect(chooseExternalInterface(snapshot, { iface: ['192.0.2.10'] }).name).toBe('eth0')
    expect(chooseExternalInterface(snapshot, { iface: ['2001:db8::7'] }).name).toBe('eth1')
  })

  it('--iface-regex matches addresses first, then names', () => {
    // "eth" matches no address, then names in system order
    expect(chooseExternalInterface(snapshot, { ifaceRegex: ['^eth'] }).name).toBe('eth0')
    // an address pattern beats a name that would also match
    expect(chooseExternalInterface(snapshot, { ifaceRegex: ['^198\\.51\\.'] }).name).toBe('eth1')
    expect(chooseExternalInterface(snapshot, { ifaceRegex: ['^x', 'th1$'] }).name).toBe('eth1')
  })

  it('--iface-can-reach uses the longest matching route', () => {
    expect(chooseExternalInterface(snapshot, { ifaceCanReach: '198.51.100.200' }).name).toBe('eth1')
    expect(chooseExternalInterface(snapshot, { ifaceCanReach: '8.8.8.8' }).name).toBe('eth0')
  })

  it('IPv6: interface address and --public-ipv6, dual-stack needs one interface for both defaults', () => {
    expect(chooseExternalInterface(snapshot, { iface: ['eth1'], enableIPv6: true })).toEqual({
      name: 'eth1',
      index: 3,
      mtu: 9000,
      ifaceAddr: '198.51.100.7',
      extAddr: '198.51.100.7',
      ifaceV6Addr: '2001:db8::7',
      extV6Addr: '2001:db8::7',
    })
    expect(
      chooseExternalInterface(snapshot, {
        enableIPv4: false,
        enableIPv6: true,
        publicIPv6: '2001:db8::99',
      }),
    ).toEqual({
      name: 'eth1',
      index: 3,
      mtu: 9000,
      ifaceV6Addr: '2001:db8::7',
      extV6Addr: '2001:db8::99',
    })
    expect(() => chooseExternalInterface(snapshot, { enableIPv6: true })).toThrow(
      'the IPv4 and IPv6 default routes use different interfaces',
    )
  })

  it('fails with flanneld message and the reasons when flags match nothing usable', () => {
    const error = (() => {
      try {
        chooseExternalInterface(snapshot, { iface: ['br0', 'zero', 'missing'] })
      } catch (e) {
        return e
      }
    })()
    expect(error).toBeInstanceOf(ExternalInterfaceError)
    expect(isFlannelError(error, 'NO_EXTERNAL_INTERFACE')).toBe(true)
    expect((error as Error).message).toBe(
      `${NO_MATCHING_INTERFACE_MESSAGE} (iface br0: failed to find IPv4 address for interface br0; ` +
        'iface zero: failed to determine MTU for zero interface; iface missing: no such interface)',
    )
  })

  it('fails without a default route, and rejects bad option values by name', () => {
    const noDefault = { ...snapshot, routes: snapshot.routes.filter((r) => r.dst !== '0.0.0.0/0') }
    expect(() => chooseExternalInterface(noDefault)).toThrow(
      'failed to get default interface: no IPv4 default route',
    )
    expect(() => chooseExternalInterface(snapshot, { ifaceRegex: ['('] })).toThrow(
      'invalid ifaceRegex "("',
    )
    expect(() => chooseExternalInterface(snapshot, { publicIP: '2001:db8::1' })).toThrow(
      'invalid publicIP',
    )
  })
})
