import { afterEach, describe, expect, it, vi } from 'vitest'
import {
  ConfigError,
  InvalidArgumentError,
  Ip4Net,
  Ip6Net,
  LeaseConflictError,
  MemoryRegistry,
  NEVER_EXPIRES,
  isFlannelError,
  parseIp4,
  parseIp6,
  type LeaseEvent,
} from '@flannel/core'

const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}'
const ME = { publicIP: '192.0.2.1', backendType: 'host-gw' }

function record(registry: MemoryRegistry): { batches: LeaseEvent[][]; stop: () => void } {
  const batches: LeaseEvent[][] = []
  const sub = registry.watchLeases().subscribe((b) => batches.push(b))
  return { batches, stop: () => sub.unsubscribe() }
}

afterEach(() => {
  vi.useRealTimers()
})

describe('MemoryRegistry', () => {
  it('takes the config as text or object and rejects an invalid one with ConfigError', async () => {
    const fromObject = new MemoryRegistry({ Network: '10.6.0.0/16' })
    expect((await fromObject.getNetworkConfig()).backendType).toBe('udp')
    expect(() => new MemoryRegistry('{"Network":"10.1.0.0/29"}')).toThrow(ConfigError)
    expect(() => new MemoryRegistry('{"Network":"10.1.0.0/29"}')).toThrow(
      'network is too small. Minimum useful network prefix is /28',
    )
  })

  it('rejects a bad ttlMs and a bad PublicIP with InvalidArgumentError', async () => {
    expect(() => new MemoryRegistry(CONFIG, { ttlMs: 0 })).toThrow(InvalidArgumentError)
    const registry = new MemoryRegistry(CONFIG)
    await expect(registry.acquireLease({ publicIP: 'nope' })).rejects.toThrow(InvalidArgumentError)
    expect(registry.listLeases()).toEqual([])
  })

  it('uses the injected clock and ttlMs for expirations', async () => {
    let now = 1_000_000
    const registry = new MemoryRegistry(CONFIG, { clock: () => now, ttlMs: 5000, random: () => 0 })
    const lease = await registry.acquireLease(ME)
    expect(lease.subnet.toString()).toBe('10.5.1.0/24')
    expect(lease.expiration.getTime()).toBe(1_005_000)
    now += 4999
    expect(registry.listLeases()).toHaveLength(1)
    now += 1
    expect(registry.listLeases()).toHaveLength(0)
  })

  it('deletes our incompatible lease when the config moved on (watchers see it removed)', async () => {
    const registry = new MemoryRegistry('{"Network":"10.5.0.0/16","SubnetMax":"10.5.9.0"}')
    await registry.reserve(Ip4Net.parse('10.9.1.0/24'), ME) // outside 10.5.1.0..10.5.9.0
    const rec = record(registry)
    const lease = await registry.acquireLease(ME)
    expect(lease.subnet.toString()).not.toBe('10.9.1.0/24')
    expect(
      rec.batches
        .slice(1)
        .flat()
        .map((e) => `${e.type} ${e.lease.subnet}`),
    ).toEqual(['removed 10.9.1.0/24', `added ${lease.subnet}`])
  })

  it('keeps reservations: never expire, reused by the matching PublicIP, no duplicates', async () => {
    let now = 0
    const registry = new MemoryRegistry(CONFIG, { clock: () => now })
    const reserved = await registry.reserve(Ip4Net.parse('10.5.42.0/24'), { publicIP: '192.0.2.1' })
    expect(reserved.expiration).toBe(NEVER_EXPIRES)
    await expect(registry.reserve(Ip4Net.parse('10.5.42.0/24'), ME)).rejects.toThrow(
      LeaseConflictError,
    )
    now += 365 * 24 * 3600 * 1000
    const lease = await registry.acquireLease(ME)
    expect(lease.subnet.toString()).toBe('10.5.42.0/24')
    expect(lease.attrs.backendType).toBe('host-gw')
    expect(lease.expiration).toBe(NEVER_EXPIRES)
    expect((await registry.renewLease(lease)).expiration).toBe(NEVER_EXPIRES)
  })

  it('takes no subnet with host bits set: reserve, renew and release reject it, nothing changes', async () => {
    const registry = new MemoryRegistry(CONFIG)
    const real = await registry.reserve(Ip4Net.parse('10.5.42.0/24'), { publicIP: '192.0.2.1' })
    const rec = record(registry)
    const bogus = new Ip4Net(parseIp4('10.5.42.7'), 24)
    const v6 = new Ip6Net(parseIp6('fd00::1'), 64)
    for (const attempt of [
      () => registry.reserve(bogus, { publicIP: '192.0.2.66' }),
      () => registry.reserve(Ip4Net.parse('10.5.43.0/24'), { publicIP: '192.0.2.66' }, v6),
      () => registry.renewLease({ ...real, subnet: bogus }),
      () => registry.releaseLease({ ...real, subnet: bogus }),
    ]) {
      const err = await attempt().catch((e: unknown) => e)
      expect(isFlannelError(err, 'INVALID_ARGUMENT')).toBe(true)
      expect((err as Error).message).toMatch(/has host bits set \(the subnet is /)
    }
    expect(registry.listLeases()).toEqual([real])
    expect(rec.batches.slice(1)).toEqual([])
    rec.stop()
  })

  it('expires leases by its own timer while watched, and keeps no timer otherwise', async () => {
    vi.useFakeTimers({ now: 0 })
    const registry = new MemoryRegistry(CONFIG, { ttlMs: 1000 })
    const lease = await registry.acquireLease(ME)
    expect(vi.getTimerCount()).toBe(0)
    const rec = record(registry)
    expect(vi.getTimerCount()).toBe(1)
    vi.advanceTimersByTime(1000)
    expect(rec.batches.slice(1)).toEqual([[{ type: 'removed', lease }]])
    expect(vi.getTimerCount()).toBe(0)
    await registry.acquireLease(ME)
    expect(vi.getTimerCount()).toBe(1)
    rec.stop()
    expect(vi.getTimerCount()).toBe(0)
  })

  it('close completes watches, clears the timer and refuses later calls', async () => {
    vi.useFakeTimers({ now: 0 })
    const registry = new MemoryRegistry(CONFIG)
    await registry.acquireLease(ME)
    let completed = false
    registry.watchLeases().subscribe({ complete: () => (completed = true) })
    expect(vi.getTimerCount()).toBe(1)
    await registry.close()
    await registry.close()
    expect(completed).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
    const err: unknown = await registry.acquireLease(ME).catch((e: unknown) => e)
    expect(isFlannelError(err, 'REGISTRY_CLOSED')).toBe(true)
    let closedWatchCompleted = false
    registry.watchLeases().subscribe({ complete: () => (closedWatchCompleted = true) })
    expect(closedWatchCompleted).toBe(true)
  })

  it('delivers a renewal to every watcher as one added batch', async () => {
    const registry = new MemoryRegistry(CONFIG)
    const lease = await registry.acquireLease(ME)
    const a = record(registry)
    const b = record(registry)
    const renewed = await registry.renewLease(lease)
    for (const rec of [a, b])
      expect(rec.batches).toEqual([[{ type: 'added', lease }], [{ type: 'added', lease: renewed }]])
    a.stop()
    b.stop()
  })
})

describe('MemoryRegistry.setNetworkConfig', () => {
  it('moves later acquisitions into the new network, as flanneld after a config change', async () => {
    const registry = new MemoryRegistry(
      '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.0","SubnetMax":"10.3.25.0"}',
    )
    const before = await registry.acquireLease({ publicIP: '198.51.100.4' })
    expect(Ip4Net.parse('10.3.0.0/16').contains(before.subnet.ip)).toBe(true)
    expect(() => registry.setNetworkConfig('{"Network":"10.4.0.0/29"}')).toThrow(ConfigError)
    registry.setNetworkConfig('{"Network":"10.4.0.0/16"}')
    expect((await registry.getNetworkConfig()).network?.toString()).toBe('10.4.0.0/16')
    const after = await registry.acquireLease({ publicIP: '198.51.100.4' })
    expect(Ip4Net.parse('10.4.0.0/16').contains(after.subnet.ip)).toBe(true)
    expect(registry.listLeases().map((l) => l.subnet.toString())).toEqual([after.subnet.toString()])
  })
})
