import { isFlannelError, parseNetworkConfig, type SubnetRegistry } from '@flannel/core'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { describe, expect, it } from 'vitest'
import { UdpBackend, UdpNativeUnavailableError, createBackend } from '../src/index.js'

const ext = { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.1', extAddr: '192.0.2.1' }

/** A registry that fails the test if a lease is asked for. */
const untouchedRegistry = {
  acquireLease: () => {
    throw new Error('no lease may be acquired for a rejected config')
  },
} as unknown as SubnetRegistry

describe('UdpBackend options', () => {
  it('is the udp backend', () => {
    expect(createBackend({ registry: untouchedRegistry, extIface: ext }).type).toBe('udp')
  })

  it.each([['8285'], [0], [70000], [1.5]])(
    'rejects Backend.Port %j before acquiring a lease',
    async (port) => {
      const config = parseNetworkConfig({
        Network: '10.5.0.0/16',
        Backend: { Type: 'udp', Port: port },
      })
      const backend = new UdpBackend(
        { registry: untouchedRegistry, extIface: ext },
        { host: new MemoryHostNetwork() },
      )
      const error = await backend.registerNetwork(config).catch((e: unknown) => e)
      expect(isFlannelError(error, 'CONFIG_INVALID')).toBe(true)
      expect(error).toMatchObject({ field: 'Backend.Port', value: port })
    },
  )

  it('rejects a batch size out of range', async () => {
    const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'udp' } })
    const backend = new UdpBackend({ registry: untouchedRegistry, extIface: ext }, { batchSize: 0 })
    await expect(backend.registerNetwork(config)).rejects.toMatchObject({
      code: 'INVALID_ARGUMENT',
      field: 'batchSize',
    })
  })

  it.each([
    [{ datapath: 'fast' }, 'datapath', 'fast'],
    [{ mode: 'turbo' }, 'mode', 'turbo'],
    [{ datapath: 'batch', mode: 'single' }, 'mode', 'single'],
  ])(
    'rejects the datapath options %j, naming the field and value',
    async (options, field, value) => {
      const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'udp' } })
      const backend = new UdpBackend(
        { registry: untouchedRegistry, extIface: ext },
        { host: new MemoryHostNetwork(), ...(options as object) },
      )
      const error = await backend.prepare(config).catch((e: unknown) => e)
      expect(isFlannelError(error, 'INVALID_ARGUMENT')).toBe(true)
      expect(error).toMatchObject({ field, value })
      expect((error as Error).message).toContain(JSON.stringify(value))
    },
  )

  it('explains how to build the native addon when it cannot load', () => {
    const error = new UdpNativeUnavailableError('/x/flannel_udp.node', {
      cause: new Error('ENOENT'),
    })
    expect(error.code).toBe('UDP_NATIVE_UNAVAILABLE')
    expect(error.message).toContain('pnpm --filter @flannel/backend-udp run build:native')
    expect(error.message).toContain('/x/flannel_udp.node')
  })
})
