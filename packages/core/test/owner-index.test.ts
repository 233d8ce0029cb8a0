import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { Ip4Net, Ip6Net, leasesOverlap, type Lease } from '@flannel/core'
import { subnetKey } from '@flannel/core/registry'
import { OwnerIndex } from '../src/agent/owner-index.js'

function lease(ip: number, len: number, v6?: [number, number]): Lease {
  return {
    subnet: new Ip4Net(ip >>> 0, len),
    ...(v6 ? { ipv6Subnet: Ip6Net.parse(`fd00:0:0:${v6[0].toString(16)}::/${v6[1]}`) } : {}),
    attrs: { publicIP: '192.0.2.1' },
    expiration: new Date(0),
  }
}

/** Random leases in a small space (10.0.0.0/20, prefixes 18..26, a tenth without IPv4, some with IPv6). */
const leaseArb = fc
  .record({
    third: fc.integer({ min: 0, max: 15 }),
    fourth: fc.integer({ min: 0, max: 255 }),
    len: fc.integer({ min: 18, max: 26 }),
    empty: fc.integer({ min: 0, max: 9 }).map((n) => n === 0),
    v6: fc.option(fc.tuple(fc.integer({ min: 0, max: 7 }), fc.constantFrom(62, 63, 64))),
  })
  .map(({ third, fourth, len, empty, v6 }) =>
    empty
      ? lease(0, 0, v6 ?? [0, 64])
      : lease(Ip4Net.parse(`10.0.${third}.${fourth}/${len}`).ip, len, v6 ?? undefined),
  )

describe('OwnerIndex', () => {
  it('finds the same owner as a pass over every owner in insertion order', () => {
    fc.assert(
      fc.property(
        fc.array(fc.tuple(fc.constantFrom('set', 'delete', 'find'), leaseArb), {
          maxLength: 80,
        }),
        (ops) => {
          const index = new OwnerIndex()
          const reference = new Map<string, Lease>()
          for (const [op, l] of ops) {
            const key = subnetKey(l.subnet, l.ipv6Subnet)
            if (op === 'set') {
              index.set(key, l)
              reference.set(key, l)
            } else if (op === 'delete') {
              expect(index.delete(key)).toBe(reference.delete(key))
            }
            const expected = [...reference.values()].find((o) => leasesOverlap(o, l))
            expect(index.overlapping(l)).toBe(expected)
            expect(index.has(key)).toBe(reference.has(key))
          }
        },
      ),
      { numRuns: 300 },
    )
  })

  it('answers for 20,000 /24 owners and a /16 over them', () => {
    const index = new OwnerIndex()
    for (let i = 0; i < 20_000; i++) {
      const l = lease((10 << 24) + (i << 8), 24)
      expect(index.overlapping(l)).toBeUndefined()
      index.set(subnetKey(l.subnet), l)
    }
    expect(index.overlapping(lease(10 << 24, 16))?.subnet.toString()).toBe('10.0.0.0/24')
  })
})
