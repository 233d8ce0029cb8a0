import { NEVER, Subject, type Observable } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  Ip4Net,
  lookupBackend,
  parseNetworkConfig,
  SubnetExhaustedError,
  type ExternalInterface,
  type LeaseEvent,
} from '@flannel/core'
import { alloc, AllocBackend, createBackend } from '@flannel/backend-alloc'
import { FakeRegistry, FakeTimers } from '../../core/test/agent-fakes.js'

const ext: ExternalInterface = {
  name: 'eth0',
  index: 2,
  mtu: 1400,
  ifaceAddr: '192.0.2.10',
  extAddr: '198.51.100.7',
}
const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'alloc' } })

describe('AllocBackend', () => {
  it('acquires a lease publishing PublicIP only, with the external MTU', async () => {
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    const network = await new AllocBackend({ registry, extIface: ext }).registerNetwork(config)
    expect(network.mtu).toBe(1400)
    expect(network.lease.attrs).toEqual({ publicIP: '198.51.100.7' })
    expect(registry.leases.get(network.lease.subnet.toString())).toBeDefined()
  })

  it('asks for the previous subnet', async () => {
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    const network = await createBackend({ registry, extIface: ext }).registerNetwork(config, {
      previous: { subnet: Ip4Net.parse('10.5.40.0/24') },
    })
    expect(network.lease.subnet.toString()).toBe('10.5.40.0/24')
  })

  it('publishes PublicIP only, also in dual-stack mode (as flanneld)', async () => {
    const v6 = parseNetworkConfig({
      Network: '10.5.0.0/16',
      EnableIPv6: true,
      IPv6Network: 'fc00::/48',
      Backend: { Type: 'alloc' },
    })
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    const network = await new AllocBackend({
      registry,
      extIface: { ...ext, extV6Addr: '2001:db8::7' },
    }).registerNetwork(v6)
    expect(network.lease.attrs).toEqual({ publicIP: '198.51.100.7' })
  })

  it('prefixes acquisition failures with flanneld wording', async () => {
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    registry.acquireLease = () => Promise.reject(new SubnetExhaustedError())
    const err = await new AllocBackend({ registry, extIface: ext })
      .registerNetwork(config)
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SubnetExhaustedError)
    expect((err as Error).message).toBe('failed to acquire lease: out of subnets')
  })

  it('releases the lease when aborted during acquisition', async () => {
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    const controller = new AbortController()
    const acquire = registry.acquireLease.bind(registry)
    registry.acquireLease = async (attrs, opts) => {
      const lease = await acquire(attrs, opts)
      controller.abort()
      return lease
    }
    await expect(
      new AllocBackend({ registry, extIface: ext }).registerNetwork(config, {
        signal: controller.signal,
      }),
    ).rejects.toMatchObject({ code: 'ABORTED' })
    expect(registry.leases.size).toBe(0)
  })

  it('run never subscribes to the lease stream and never completes on its own', async () => {
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    const network = await new AllocBackend({ registry, extIface: ext }).registerNetwork(config)
    const events = new Subject<LeaseEvent[]>()
    const out: Observable<unknown> = network.run(events)
    expect(out).toBe(NEVER)
    const sub = out.subscribe()
    expect(events.observed).toBe(false)
    sub.unsubscribe()
  })

  it('is found by lookup under its Type', async () => {
    const factory = lookupBackend('ALLOC', [alloc()])
    expect(factory.type).toBe('alloc')
    const registry = new FakeRegistry({ Network: '10.5.0.0/16' }, new FakeTimers())
    expect((await factory.create({ registry, extIface: ext })).type).toBe('alloc')
  })

  it('is still found in the older table form through createBackend', () => {
    const factory = lookupBackend('alloc', { alloc: createBackend })
    expect(factory.type).toBe('alloc')
  })
})
