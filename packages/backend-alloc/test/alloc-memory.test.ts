import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  Agent,
  Ip4Net,
  MemoryRegistry,
  isFlannelError,
  parseNetworkConfig,
  type AgentEvent,
  type ExternalInterface,
} from '@flannel/core'
import { alloc, AllocBackend } from '@flannel/backend-alloc'
import { FakeTimers, waitFor } from '../../core/test/agent-fakes.js'

const ext = (ip: string): ExternalInterface => ({ name: 'eth0', index: 2, mtu: 1500, extAddr: ip })

describe('AllocBackend on MemoryRegistry', () => {
  it('reuses the lease carrying its PublicIP, honours the previous subnet, fails when full', async () => {
    const json = '{"Network":"10.1.0.0/28","Backend":{"Type":"alloc"}}' // subnets .4, .8, .12
    const config = parseNetworkConfig(json)
    const registry = new MemoryRegistry(json)
    try {
      const a = await new AllocBackend({ registry, extIface: ext('192.0.2.1') }).registerNetwork(
        config,
      )
      const again = await new AllocBackend({
        registry,
        extIface: ext('192.0.2.1'),
      }).registerNetwork(config)
      expect(again.lease.subnet.toString()).toBe(a.lease.subnet.toString())

      const free = ['10.1.0.4/30', '10.1.0.8/30', '10.1.0.12/30'].find(
        (s) => s !== a.lease.subnet.toString(),
      )!
      const b = await new AllocBackend({ registry, extIface: ext('192.0.2.2') }).registerNetwork(
        config,
        {
          previous: { subnet: Ip4Net.parse(free) },
        },
      )
      expect(b.lease.subnet.toString()).toBe(free)

      await new AllocBackend({ registry, extIface: ext('192.0.2.3') }).registerNetwork(config)
      const err = await new AllocBackend({ registry, extIface: ext('192.0.2.4') })
        .registerNetwork(config)
        .catch((e: unknown) => e)
      expect(isFlannelError(err, 'SUBNET_EXHAUSTED')).toBe(true)
      expect((err as Error).message).toBe('failed to acquire lease: out of subnets')
    } finally {
      await registry.close()
    }
  })
})

describe('Agent + AllocBackend on MemoryRegistry (fake clock)', () => {
  let dir: string
  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flam-'))
  })
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('writes subnet.env, renews an hour before expiry, and ends when the lease is deleted', async () => {
    const timers = new FakeTimers()
    const registry = new MemoryRegistry('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}', {
      clock: () => timers.now(),
    })
    const agent = new Agent({
      registry,
      backends: [alloc()],
      extIface: ext('192.0.2.10'),
      subnetFile: join(dir, 'subnet.env'),
      timers,
    })
    const events: AgentEvent[] = []
    let error: unknown
    const sub = agent.run().subscribe({ next: (e) => events.push(e), error: (e) => (error = e) })
    try {
      await waitFor(() => agent.status === 'running')
      const first = agent.lease!
      expect(await readFile(join(dir, 'subnet.env'), 'utf8')).toBe(
        `FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=${first.subnet.toString().replace('.0/', '.1/')}\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n`,
      )
      await timers.advance(23 * 60 * 60_000)
      await waitFor(() => events.some((e) => e.type === 'renewed'))
      expect(agent.lease!.expiration.getTime()).toBeGreaterThan(first.expiration.getTime())

      await registry.releaseLease(agent.lease!)
      await waitFor(() => error !== undefined)
      expect(isFlannelError(error, 'LEASE_REVOKED')).toBe(true)
      expect(timers.count).toBe(0)
    } finally {
      sub.unsubscribe()
      await registry.close()
    }
  })
})
