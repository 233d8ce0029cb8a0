import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import {
  AbortError,
  Ip4Net,
  LeaseConflictError,
  SubnetExhaustedError,
  isFlannelError,
  parseNetworkConfig,
  type Lease,
} from '@flannel/core'
import { acquireFromStore, leaseKey, subnetKey, type LeaseStore } from '@flannel/core/registry'

const CONFIG = parseNetworkConfig(
  '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.0","SubnetMax":"10.3.4.0"}',
)
const EXPIRES = new Date('2026-01-02T00:00:00Z')

/** A map-backed store that records every call; `rivals` are leases that appear just before a create. */
function mapStore(initial: Lease[] = [], rivals: Lease[] = []) {
  const leases = new Map(initial.map((l) => [leaseKey(l), l]))
  const calls: string[] = []
  const store: LeaseStore = {
    list: () => {
      calls.push('list')
      return Promise.resolve([...leases.values()])
    },
    create: (subnet, ipv6Subnet, attrs) => {
      const rival = rivals.shift()
      if (rival) leases.set(leaseKey(rival), rival)
      const key = subnetKey(subnet, ipv6Subnet)
      calls.push(`create ${key}`)
      if (leases.has(key)) return Promise.resolve(undefined)
      const lease: Lease = { subnet, attrs, expiration: EXPIRES }
      leases.set(key, lease)
      return Promise.resolve(lease)
    },
    update: (lease, attrs) => {
      calls.push(`update ${leaseKey(lease)}`)
      const updated = { ...lease, attrs, expiration: EXPIRES }
      leases.set(leaseKey(lease), updated)
      return Promise.resolve(updated)
    },
    remove: (lease) => {
      calls.push(`remove ${leaseKey(lease)}`)
      leases.delete(leaseKey(lease))
      return Promise.resolve()
    },
  }
  return { store, leases, calls }
}
const lease = (cidr: string, publicIP: string): Lease => ({
  subnet: Ip4Net.parse(cidr),
  attrs: { publicIP },
  expiration: EXPIRES,
})
const first = (): number => 0

describe('acquireFromStore', () => {
  it('creates the chosen subnet', async () => {
    const { store, calls } = mapStore([lease('10.3.1.0/24', '198.51.100.1')])
    const got = await acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1' },
      random: first,
    })
    expect(got.source).toBe('random')
    expect(got.lease.subnet.toString()).toBe('10.3.2.0/24')
    expect(calls).toEqual(['list', 'create 10.3.2.0-24'])
  })

  it('updates the lease carrying our PublicIP instead of creating', async () => {
    const { store, calls } = mapStore([lease('10.3.3.0/24', '192.0.2.1')])
    const got = await acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1', backendType: 'host-gw' },
    })
    expect(got).toMatchObject({ source: 'reuse', lease: { attrs: { backendType: 'host-gw' } } })
    expect(got.lease.subnet.toString()).toBe('10.3.3.0/24')
    expect(calls).toEqual(['list', 'update 10.3.3.0-24'])
  })

  it('deletes our incompatible lease before creating', async () => {
    const { store, calls, leases } = mapStore([lease('10.3.9.0/24', '192.0.2.1')])
    const got = await acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1' },
      random: first,
    })
    expect(got.lease.subnet.toString()).toBe('10.3.1.0/24')
    expect(calls).toEqual(['list', 'remove 10.3.9.0-24', 'create 10.3.1.0-24'])
    expect([...leases.keys()]).toEqual(['10.3.1.0-24'])
  })

  it('lists again and picks anew after a lost race', async () => {
    const conflicts: string[] = []
    const { store, calls } = mapStore([], [lease('10.3.1.0/24', '198.51.100.9')])
    const got = await acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1' },
      random: first,
      onConflict: (subnet, n) => conflicts.push(`${subnet.toString()} ${n}`),
    })
    expect(got.lease.subnet.toString()).toBe('10.3.2.0/24')
    expect(calls).toEqual(['list', 'create 10.3.1.0-24', 'list', 'create 10.3.2.0-24'])
    expect(conflicts).toEqual(['10.3.1.0/24 0'])
  })

  it("gives up with flanneld's message after `attempts` lost races", async () => {
    const rivals = ['10.3.1.0/24', '10.3.2.0/24'].map((c) => lease(c, '198.51.100.9'))
    const { store } = mapStore([], rivals)
    const run = acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1' },
      random: first,
      attempts: 2,
    })
    await expect(run).rejects.toBeInstanceOf(LeaseConflictError)
    await expect(run).rejects.toThrow('max retries reached trying to acquire a subnet')
  })

  it("fails with 'out of subnets' when the range is full", async () => {
    const full = ['10.3.1.0/24', '10.3.2.0/24', '10.3.3.0/24', '10.3.4.0/24'].map((c) =>
      lease(c, '198.51.100.9'),
    )
    const { store } = mapStore(full)
    await expect(
      acquireFromStore(store, { config: CONFIG, attrs: { publicIP: '192.0.2.1' } }),
    ).rejects.toThrow(SubnetExhaustedError)
  })

  it('rejects with AbortError while waiting between races, and before starting', async () => {
    const { store } = mapStore([], [lease('10.3.1.0/24', '198.51.100.9')])
    const controller = new AbortController()
    const run = acquireFromStore(store, {
      config: CONFIG,
      attrs: { publicIP: '192.0.2.1' },
      random: first,
      signal: controller.signal,
      retryDelayMs: () => 60_000,
      onConflict: () => queueMicrotask(() => controller.abort()),
    })
    await expect(run).rejects.toBeInstanceOf(AbortError)
    const aborted = AbortSignal.abort()
    await expect(
      acquireFromStore(mapStore().store, {
        config: CONFIG,
        attrs: { publicIP: '192.0.2.1' },
        signal: aborted,
      }),
    ).rejects.toBeInstanceOf(AbortError)
  })
})

describe('acquireFromStore under concurrency', () => {
  it('never gives one subnet to two hosts, whatever the interleaving of store calls', async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.scheduler(),
        fc.integer({ min: 2, max: 8 }),
        fc.integer({ min: 1, max: 6 }),
        async (s, hosts, size) => {
          const config = parseNetworkConfig(
            `{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.0","SubnetMax":"10.3.${size}.0"}`,
          )
          const { store: direct, leases } = mapStore()
          // Every store call's answer is delivered in an order the scheduler picks.
          const store: LeaseStore = {
            list: s.scheduleFunction((signal?: AbortSignal) => direct.list(signal)),
            create: s.scheduleFunction(direct.create),
            update: s.scheduleFunction(direct.update),
            remove: s.scheduleFunction(direct.remove),
          }
          const runs = Array.from({ length: hosts }, (_, i) =>
            acquireFromStore(store, {
              config,
              attrs: { publicIP: `192.0.2.${i + 1}` },
              random: first, // everybody wants the same subnet: the most races
              attempts: 50,
            }).then(
              (got) => ({ ok: got.lease }),
              (err: unknown) => ({ err }),
            ),
          )
          await s.waitIdle()
          const results = await Promise.all(runs)
          const won = results.flatMap((r) => ('ok' in r ? [r.ok] : []))
          expect(new Set(won.map(leaseKey)).size).toBe(won.length)
          expect(won.length).toBe(Math.min(hosts, size))
          for (const lease of won) {
            expect(leases.get(leaseKey(lease))?.attrs.publicIP).toBe(lease.attrs.publicIP)
          }
          for (const r of results) {
            if ('err' in r) expect(isFlannelError(r.err, 'SUBNET_EXHAUSTED')).toBe(true)
          }
        },
      ),
      { numRuns: 100 },
    )
  })
})
