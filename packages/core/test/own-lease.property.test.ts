/**
 * Property of the shared peer filter (`withoutOwnLease`) over any sequence of
 * lease events: subnets with host bits, leases on or around the own subnet,
 * leases overlapping a peer, second keys for a peer's subnet, IPv6 parts with
 * host bits. What comes out is always a consistent peer set (each subnet one
 * owner, none on the own subnet, none with host bits), a removal only ever
 * follows the add of the same key, and the peers that were there first are
 * never removed or replaced by somebody else's events.
 */
import fc from 'fast-check'
import { from, toArray, firstValueFrom } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  Ip4Net,
  Ip6Net,
  isOwnSubnet,
  leasesOverlap,
  parseIp4,
  parseIp6,
  withoutOwnLease,
  type Lease,
  type LeaseEvent,
} from '@flannel/core'
import { isCanonicalLease, leaseKey } from '@flannel/core/registry'
import { propertySeed } from '@flannel/testkit'

const own: Lease = lease(Ip4Net.parse('10.5.1.0/24'), Ip6Net.parse('fd00:5:0:1::/64'))
const peers: Lease[] = [
  lease(Ip4Net.parse('10.5.2.0/24')),
  lease(Ip4Net.parse('10.5.3.0/24'), Ip6Net.parse('fd00:5:0:3::/64')),
]

function lease(subnet: Ip4Net, ipv6Subnet?: Ip6Net, publicIP = '192.0.2.1'): Lease {
  return {
    subnet,
    ...(ipv6Subnet ? { ipv6Subnet } : {}),
    attrs: { publicIP },
    expiration: new Date(0),
  }
}

// Addresses around the interesting subnets (10.5.0.0 .. 10.5.3.255), any prefix, host bits allowed.
const v4 = fc
  .tuple(
    fc.integer({ min: 0, max: 3 }),
    fc.integer({ min: 0, max: 255 }),
    fc.integer({ min: 14, max: 28 }),
  )
  .map(([c, d, len]) => new Ip4Net(parseIp4(`10.5.${c}.${d}`), len))
const v6 = fc
  .tuple(
    fc.integer({ min: 0, max: 3 }),
    fc.integer({ min: 0, max: 3 }),
    fc.integer({ min: 60, max: 66 }),
  )
  .map(([group, low, len]) => new Ip6Net(parseIp6(`fd00:5:0:${group}::${low}`), len))
const hostile = fc
  .tuple(v4, fc.option(v6, { nil: undefined }), fc.integer({ min: 10, max: 250 }))
  .map(([subnet, ipv6Subnet, ip]) => lease(subnet, ipv6Subnet, `192.0.2.${ip}`))
  // A put of a first peer's very key is that peer's own update (nothing in a
  // lease event tells who wrote it), not somebody else's event.
  .filter((l) => !peers.some((p) => leaseKey(p) === leaseKey(l)))
const events = fc.array(
  fc.array(
    fc.tuple(fc.constantFrom('added', 'removed') as fc.Arbitrary<LeaseEvent['type']>, hostile),
    { maxLength: 4 },
  ),
  { maxLength: 12 },
)

describe('withoutOwnLease over hostile lease events (property)', () => {
  it('passes on a consistent peer set; the first peers are never removed or replaced', async () => {
    const seed = propertySeed('own-lease property')
    await fc.assert(
      fc.asyncProperty(events, async (batches) => {
        const input: LeaseEvent[][] = [
          [...peers, own].map((l): LeaseEvent => ({ type: 'added', lease: l })),
          ...batches.map((b) => b.map(([type, l]): LeaseEvent => ({ type, lease: l }))),
        ]
        const output = await firstValueFrom(from(input).pipe(withoutOwnLease(own), toArray()))
        const live = new Map<string, Lease>()
        for (const [i, batch] of output.entries()) {
          for (const e of batch) {
            const key = leaseKey(e.lease)
            expect(isCanonicalLease(e.lease)).toBe(true)
            expect(isOwnSubnet(e.lease, own)).toBe(false)
            if (e.type === 'removed') {
              expect(live.has(key), `removal of ${key}, never added`).toBe(true)
              live.delete(key)
            } else {
              live.set(key, e.lease)
            }
            if (i > 0) {
              // nothing after the first batch is about the first peers
              expect(peers.map(leaseKey)).not.toContain(key)
            }
          }
          const all = [...live.values()]
          for (const [j, a] of all.entries()) {
            for (const b of all.slice(j + 1)) expect(leasesOverlap(a, b)).toBe(false)
          }
        }
        expect(peers.every((p) => live.get(leaseKey(p)) === p)).toBe(true)
        // the operator is idempotent: a network filtering an already filtered stream sees the same
        const twice = await firstValueFrom(
          from(input).pipe(withoutOwnLease(own), withoutOwnLease(own), toArray()),
        )
        expect(twice).toEqual(output)
      }),
      { seed, numRuns: 200 },
    )
  })
})
