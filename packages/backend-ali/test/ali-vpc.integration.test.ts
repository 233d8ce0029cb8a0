import { createServer } from 'node:net'
import { EMPTY, firstValueFrom, of, toArray } from 'rxjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  ConfigError,
  Ip4Net,
  RouteLimitError,
  isFlannelError,
  parseNetworkConfig,
  type BackendContext,
  type Lease,
  type LeaseAttrs,
  type Logger,
  type SubnetRegistry,
} from '@flannel/core'
import { startAliEmulator, type AliEmulator } from '@flannel/testkit/ali'
import {
  AliAuthError,
  AliMetadataError,
  AliRouteTimeoutError,
  AliVpcBackend,
  createBackend,
  type AliVpcOptions,
} from '@flannel/backend-ali'

const SUBNET = '10.5.34.0/24'
const config = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"ali-vpc"}}')

/** A registry that hands out one fixed lease and records what happened (the registry is not under test here). */
function fixedRegistry(subnet = SUBNET) {
  const acquired: LeaseAttrs[] = []
  const released: Lease[] = []
  const registry: SubnetRegistry = {
    getNetworkConfig: async () => config,
    acquireLease: async (attrs) => {
      acquired.push(attrs)
      return { subnet: Ip4Net.parse(subnet), attrs, expiration: new Date(Date.now() + 86_400_000) }
    },
    renewLease: async (lease) => lease,
    releaseLease: async (lease) => {
      released.push(lease)
    },
    watchLeases: () => EMPTY,
    close: async () => {},
  }
  return { registry, acquired, released }
}

/** A pino-shaped logger that keeps every entry. */
function recordingLogger(entries: unknown[] = []): Logger & { entries: unknown[] } {
  const make = (bindings: Record<string, unknown>): Logger & { entries: unknown[] } => {
    const log =
      (level: string) =>
      (objOrMsg: object | string, msg?: string): void => {
        entries.push({ level, bindings, obj: objOrMsg, msg })
      }
    return {
      entries,
      trace: log('trace'),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more }),
    }
  }
  return make({})
}

let emu: AliEmulator
beforeEach(async () => {
  emu = await startAliEmulator()
})
afterEach(async () => {
  await emu.close()
})

function setup(options: AliVpcOptions = {}, subnet = SUBNET) {
  const reg = fixedRegistry(subnet)
  const logger = recordingLogger()
  const ctx: BackendContext = {
    registry: reg.registry,
    extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.11', extAddr: '192.0.2.11' },
    logger,
  }
  const backend = new AliVpcBackend(ctx, {
    apiEndpoint: emu.endpoint,
    metadataEndpoint: emu.metadataEndpoint,
    env: { ACCESS_KEY_ID: emu.accessKeyId, ACCESS_KEY_SECRET: emu.accessKeySecret },
    pollIntervalMs: 1,
    ...options,
  })
  return { backend, logger, ...reg }
}

const custom = (e: AliEmulator) =>
  e
    .routeEntries()
    .filter((r) => r.Type === 'Custom')
    .map((r) => `${r.DestinationCidrBlock}>${r.NextHopId}:${r.Status}`)
    .sort()
const actions = (e: AliEmulator) => e.requests.map((r) => r.action)

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

describe('AliVpcBackend against the local Alibaba RPC endpoint (real @alicloud/pop-core)', () => {
  it('discovers region, instance and VPC from metadata, then the VRouter and its first route table', async () => {
    const { backend } = setup()
    await backend.registerNetwork(config)
    expect(emu.metadataRequests).toEqual([
      '/latest/meta-data/region-id',
      '/latest/meta-data/instance-id',
      '/latest/meta-data/vpc-id',
    ])
    const [vpcs, routers, tables] = emu.requests
    expect(vpcs).toMatchObject({
      method: 'GET',
      action: 'DescribeVpcs',
      status: 200,
      params: { RegionId: emu.regionId, VpcId: emu.vpcId, Version: '2014-05-26', Format: 'JSON' },
    })
    expect(routers).toMatchObject({
      action: 'DescribeVRouters',
      params: { VRouterId: emu.vrouterId, RegionId: emu.regionId },
    })
    expect(tables).toMatchObject({
      action: 'DescribeRouteTables',
      params: { VRouterId: emu.vrouterId, RouteTableId: emu.routeTableId },
    })
    expect(tables?.params).not.toHaveProperty('RegionId')
  })

  it('skips the metadata server for values given as options', async () => {
    const { backend } = setup({
      regionId: emu.regionId,
      instanceId: emu.instanceId,
      vpcId: emu.vpcId,
    })
    await backend.registerNetwork(config)
    expect(emu.metadataRequests).toEqual([])
  })

  it('creates the route entry for its lease with the instance as next hop and waits for Available', async () => {
    const { backend, acquired } = setup()
    const network = await backend.registerNetwork(config)
    expect(acquired).toEqual([{ publicIP: '192.0.2.11' }])
    expect(network.lease.subnet.toString()).toBe(SUBNET)
    expect(network.mtu).toBe(1500)
    expect(custom(emu)).toEqual([`${SUBNET}>${emu.instanceId}:Available`])
    const create = emu.requests.find((r) => r.action === 'CreateRouteEntry')
    const { Signature: _sig, SignatureNonce: _n, Timestamp: _t, ...params } = create?.params ?? {}
    expect(params).toEqual({
      Action: 'CreateRouteEntry',
      AccessKeyId: emu.accessKeyId,
      DestinationCidrBlock: SUBNET,
      Format: 'JSON',
      NextHopId: emu.instanceId,
      NextHopType: 'Instance',
      RouteTableId: emu.routeTableId,
      SignatureMethod: 'HMAC-SHA1',
      SignatureVersion: '1.0',
      Version: '2014-05-26',
    })
    // one look before the change, then polls until no entry is Pending
    expect(actions(emu).slice(2)).toEqual([
      'DescribeRouteTables',
      'CreateRouteEntry',
      'DescribeRouteTables',
      'DescribeRouteTables',
    ])
  })

  it('changes nothing on a restart when the entry is right', async () => {
    await setup().backend.registerNetwork(config)
    const before = custom(emu)
    emu.requests.length = 0
    await setup().backend.registerNetwork(config)
    expect(custom(emu)).toEqual(before)
    expect(actions(emu)).not.toContain('CreateRouteEntry')
    expect(actions(emu)).not.toContain('DeleteRouteEntry')
  })

  it('removes its own stale entries and keeps foreign ones and its 0.0.0.0/0 entry', async () => {
    emu.addRouteEntry({ destination: '10.5.9.0/24', instanceId: emu.instanceId }) // stale, ours
    emu.addRouteEntry({ destination: '0.0.0.0/0', instanceId: emu.instanceId }) // ours, kept (DNAT)
    emu.addRouteEntry({ destination: '10.5.7.0/24', instanceId: 'i-bp1flannel0000002' }) // another host's
    const systemBefore = emu.routeEntries().filter((r) => r.Type === 'System')
    await setup().backend.registerNetwork(config)
    expect(custom(emu)).toEqual(
      [
        `0.0.0.0/0>${emu.instanceId}:Available`,
        `10.5.7.0/24>i-bp1flannel0000002:Available`,
        `${SUBNET}>${emu.instanceId}:Available`,
      ].sort(),
    )
    expect(emu.routeEntries().filter((r) => r.Type === 'System')).toEqual(systemBefore)
    const del = emu.requests.filter((r) => r.action === 'DeleteRouteEntry')
    expect(
      del.map((r) => [r.params.DestinationCidrBlock, r.params.NextHopId, r.params.RouteTableId]),
    ).toEqual([['10.5.9.0/24', emu.instanceId, emu.routeTableId]])
  })

  it('polls until every entry of the table is Available', async () => {
    await emu.close()
    emu = await startAliEmulator({ pendingDescribes: 4 })
    await setup().backend.registerNetwork(config)
    const afterCreate = actions(emu).slice(actions(emu).indexOf('CreateRouteEntry') + 1)
    expect(afterCreate).toEqual(Array(5).fill('DescribeRouteTables'))
    expect(custom(emu)).toEqual([`${SUBNET}>${emu.instanceId}:Available`])
  })

  it('times out waiting for Available, deletes the entry it created and releases the lease', async () => {
    emu.holdPending(true)
    const { backend, released } = setup({ availableTimeoutMs: 30, pollIntervalMs: 5 })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(AliRouteTimeoutError)
    expect((err as AliRouteTimeoutError).routeTableId).toBe(emu.routeTableId)
    expect((err as AliRouteTimeoutError).pending).toContain(SUBNET)
    expect(custom(emu)).toEqual([])
    expect(released.map((l) => l.subnet.toString())).toEqual([SUBNET])
  })

  it('stops on abort during the wait and leaves nothing behind', async () => {
    emu.holdPending(true)
    const { backend, released } = setup({ pollIntervalMs: 10_000 })
    const controller = new AbortController()
    const pending = backend.registerNetwork(config, { signal: controller.signal })
    while (!actions(emu).includes('CreateRouteEntry')) await new Promise((r) => setTimeout(r, 2))
    controller.abort()
    const err = await rejection(pending)
    expect(isFlannelError(err, 'ABORTED')).toBe(true)
    expect(custom(emu)).toEqual([])
    expect(released).toHaveLength(1)
  })

  it("retries while the API says the table is busy with another host's Pending entry", async () => {
    await emu.close()
    emu = await startAliEmulator({ refuseWhilePending: true, pendingDescribes: 2 })
    emu.addRouteEntry({
      destination: '10.5.7.0/24',
      instanceId: 'i-bp1flannel0000002',
      status: 'Pending',
    })
    await setup().backend.registerNetwork(config)
    const creates = emu.requests.filter((r) => r.action === 'CreateRouteEntry')
    expect(creates.map((r) => r.code ?? 'ok')).toEqual(['IncorrectRouteEntryStatus', 'ok'])
    expect(custom(emu)).toEqual(
      [`10.5.7.0/24>i-bp1flannel0000002:Available`, `${SUBNET}>${emu.instanceId}:Available`].sort(),
    )
  })

  it('gives up when the table stays busy, having changed nothing', async () => {
    await emu.close()
    emu = await startAliEmulator({ refuseWhilePending: true })
    emu.addRouteEntry({
      destination: '10.5.7.0/24',
      instanceId: 'i-bp1flannel0000002',
      status: 'Pending',
    })
    emu.holdPending(true)
    const { backend, released } = setup({ availableTimeoutMs: 30, pollIntervalMs: 5 })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toMatchObject({
      code: 'ALI_API_ERROR',
      apiCode: 'IncorrectRouteEntryStatus',
      action: 'CreateRouteEntry',
    })
    expect(custom(emu)).toEqual([`10.5.7.0/24>i-bp1flannel0000002:Pending`])
    expect(released).toHaveLength(1)
  })

  it('reports a full route table as RouteLimitError naming the table, without changing it', async () => {
    await emu.close()
    emu = await startAliEmulator({ routeEntryLimit: 2 })
    emu.addRouteEntry({ destination: '10.5.7.0/24', instanceId: 'i-bp1flannel0000002' })
    emu.addRouteEntry({ destination: '10.5.8.0/24', instanceId: 'i-bp1flannel0000003' })
    const before = emu.routeEntries()
    const { backend, released } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(RouteLimitError)
    expect((err as RouteLimitError).table).toBe(emu.routeTableId)
    expect((err as RouteLimitError).count).toBe(2)
    expect((err as Error).message).toContain(emu.routeTableId)
    expect(emu.requests.find((r) => r.action === 'CreateRouteEntry')?.code).toBe('QuotaExceeded')
    expect(emu.routeEntries()).toEqual(before)
    expect(released).toHaveLength(1)
  })

  it('reports a full table before any change when routeTableLimit is set', async () => {
    emu.addRouteEntry({ destination: '10.5.7.0/24', instanceId: 'i-bp1flannel0000002' })
    const { backend } = setup({ routeTableLimit: 1 })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(RouteLimitError)
    expect(actions(emu)).not.toContain('CreateRouteEntry')
  })

  it('surfaces a wrong secret as AliAuthError (SignatureDoesNotMatch) before taking a lease, without the secret', async () => {
    const wrongSecret = 'definitely-not-the-secret'
    const { backend, acquired, logger } = setup({
      accessKeyId: emu.accessKeyId,
      accessKeySecret: wrongSecret,
    })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(AliAuthError)
    expect(err).toMatchObject({
      code: 'ALI_AUTH_FAILED',
      apiCode: 'SignatureDoesNotMatch',
      action: 'DescribeVpcs',
    })
    expect((err as AliAuthError).requestId).toMatch(/^[0-9A-F-]{36}$/)
    expect(emu.requests).toEqual([
      expect.objectContaining({ status: 400, code: 'SignatureDoesNotMatch' }),
    ])
    expect(acquired).toEqual([])
    const everything = JSON.stringify([String(err), (err as Error).stack, logger.entries])
    expect(everything).not.toContain(wrongSecret)
    expect(everything).not.toContain('Signature=')
  })

  it('surfaces an unknown access key as AliAuthError (InvalidAccessKeyId.NotFound)', async () => {
    const { backend } = setup({ accessKeyId: 'LTAInobody', accessKeySecret: 'x' })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toMatchObject({ code: 'ALI_AUTH_FAILED', apiCode: 'InvalidAccessKeyId.NotFound' })
  })

  it('takes credentials from Backend.AccessKeyID/AccessKeySecret, and never logs the secret', async () => {
    const withKeys = parseNetworkConfig({
      Network: '10.5.0.0/16',
      Backend: {
        Type: 'ali-vpc',
        AccessKeyID: emu.accessKeyId,
        accessKeySecret: emu.accessKeySecret,
      },
    })
    const { backend, logger } = setup({ env: {} })
    await backend.registerNetwork(withKeys)
    expect(custom(emu)).toHaveLength(1)
    expect(logger.entries.length).toBeGreaterThan(0)
    expect(JSON.stringify(logger.entries)).not.toContain(emu.accessKeySecret)
  })

  it('takes both credentials from the environment when the config has only one', async () => {
    const half = parseNetworkConfig({
      Network: '10.5.0.0/16',
      Backend: { Type: 'ali-vpc', AccessKeyID: 'LTAIhalf' },
    })
    await setup().backend.registerNetwork(half)
    expect(emu.requests[0]?.params.AccessKeyId).toBe(emu.accessKeyId)
  })

  it("fails with flanneld's message when no credentials are found, before any call", async () => {
    const { backend, acquired } = setup({ env: {} })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(ConfigError)
    expect((err as ConfigError).message).toBe(
      'ACCESS_KEY_ID and ACCESS_KEY_SECRET must be provided! ',
    )
    expect(emu.requests).toEqual([])
    expect(emu.metadataRequests).toEqual([])
    expect(acquired).toEqual([])
  })

  it('fails with AliMetadataError when the metadata server answers 404', async () => {
    emu.setMetadataStatus('/latest/meta-data/vpc-id', 404)
    const { backend, acquired } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(AliMetadataError)
    expect((err as AliMetadataError).path).toBe('/latest/meta-data/vpc-id')
    expect(acquired).toEqual([])
  })

  it('retries an unreachable metadata server, then fails with AliMetadataError', async () => {
    const closed = await new Promise<number>((resolve) => {
      const s = createServer()
      s.listen(0, '127.0.0.1', () => {
        const { port } = s.address() as { port: number }
        s.close(() => resolve(port))
      })
    })
    const { backend } = setup({
      metadataEndpoint: `http://127.0.0.1:${closed}`,
      metadataRetryMs: 0,
    })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(AliMetadataError)
    expect((err as Error).message).toMatch(/after 5 attempts/)
  })

  it('is found by the agent through createBackend and reports peers as ignored', async () => {
    const { registry } = fixedRegistry()
    const backend = createBackend({
      registry,
      extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.11' },
    })
    expect(backend.type).toBe('ali-vpc')
    const network = await new AliVpcBackend(
      { registry, extIface: { name: 'eth0', index: 2, mtu: 9000, ifaceAddr: '192.0.2.11' } },
      {
        apiEndpoint: emu.endpoint,
        metadataEndpoint: emu.metadataEndpoint,
        env: { ACCESS_KEY_ID: emu.accessKeyId, ACCESS_KEY_SECRET: emu.accessKeySecret },
        pollIntervalMs: 1,
      },
    ).registerNetwork(config)
    expect(network.mtu).toBe(9000)
    const peer: Lease = {
      subnet: Ip4Net.parse('10.5.7.0/24'),
      attrs: { publicIP: '192.0.2.12' },
      expiration: new Date(0),
    }
    const events = await firstValueFrom(
      network.run(of([{ type: 'added', lease: peer }])).pipe(toArray()),
    )
    expect(events).toEqual([expect.objectContaining({ type: 'ignored', lease: peer })])
  })
})
