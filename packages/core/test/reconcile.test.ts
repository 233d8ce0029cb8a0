import { describe, expect, it } from 'vitest'
import { Ip4Net, Ip6Net, type Lease } from '@flannel/core'
import { diffLeases, leaseKey, leaseMap } from '@flannel/core/registry'

const at = (iso: string): Date => new Date(iso)
const lease = (
  cidr: string,
  publicIP: string,
  backendType?: string,
  expiration = at('2026-01-02T00:00:00Z'),
): Lease => ({
  subnet: Ip4Net.parse(cidr),
  attrs: { publicIP, ...(backendType ? { backendType } : {}) },
  expiration,
})

describe('leaseKey / leaseMap', () => {
  it('keys leases by their etcd subnet key, dual-stack form included', () => {
    expect(leaseKey(lease('10.5.34.0/24', '192.0.2.1'))).toBe('10.5.34.0-24')
    const dual: Lease = {
      ...lease('10.12.13.0/24', '192.0.2.1'),
      ipv6Subnet: Ip6Net.parse('fd00:12:13::/56'),
    }
    expect(leaseKey(dual)).toBe('10.12.13.0-24&fd00:12:13::-56')
    expect([...leaseMap([dual]).keys()]).toEqual(['10.12.13.0-24&fd00:12:13::-56'])
  })
})

describe('diffLeases', () => {
  const a = lease('10.5.1.0/24', '192.0.2.1', 'vxlan')
  const b = lease('10.5.2.0/24', '192.0.2.2', 'vxlan')
  const c = lease('10.5.3.0/24', '192.0.2.3', 'vxlan')

  it('is empty for equal snapshots, also when only expirations differ', () => {
    const renewedA = { ...a, expiration: at('2026-01-03T00:00:00Z') }
    expect(diffLeases(leaseMap([a, b]), leaseMap([renewedA, b]))).toEqual([])
  })
  it('emits removed with the cached lease (attrs included) and added for new keys', () => {
    const events = diffLeases(leaseMap([a, b]), leaseMap([b, c]))
    expect(events).toEqual([
      { type: 'removed', lease: a },
      { type: 'added', lease: c },
    ])
    expect(events[0]!.lease.attrs.backendType).toBe('vxlan')
  })
  it('emits added for a key whose value changed', () => {
    const moved = lease('10.5.1.0/24', '192.0.2.9', 'vxlan')
    expect(diffLeases(leaseMap([a]), leaseMap([moved]))).toEqual([{ type: 'added', lease: moved }])
  })
  it('treats an empty view as everything added, an empty next as everything removed', () => {
    expect(diffLeases(new Map(), leaseMap([a, b])).map((e) => e.type)).toEqual(['added', 'added'])
    expect(diffLeases(leaseMap([a, b]), new Map()).map((e) => e.type)).toEqual([
      'removed',
      'removed',
    ])
  })
  it('accepts a custom comparison (e.g. raw stored values)', () => {
    interface Stored extends Lease {
      readonly value: string
    }
    const s1: Stored = { ...a, value: '{"PublicIP":"192.0.2.1"}' }
    const s2: Stored = { ...a, value: '{"publicip":"192.0.2.1"}' }
    expect(diffLeases(new Map([['k', s1]]), new Map([['k', s2]]))).toEqual([])
    expect(
      diffLeases(new Map([['k', s1]]), new Map([['k', s2]]), (x, y) => x.value === y.value),
    ).toHaveLength(1)
  })
})
