import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EMPTY, Subject } from 'rxjs'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  Ip4Net,
  RouteLimitError,
  isFlannelError,
  parseNetworkConfig,
  type BackendContext,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type NetworkEvent,
  type SubnetRegistry,
} from '@flannel/core'
import { startGceEmulator, type GceEmulator } from '@flannel/testkit/gce'
import {
  GceAuthError,
  GceBackend,
  GceDiscoveryError,
  GceMetadataError,
  GceOperationError,
  type GceOptions,
} from '@flannel/backend-gce'

const OWN = '10.5.34.0/24'
const ROUTE = 'flannel-10-5-34-0-24'
const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'gce' } })
const lease = (subnet: string): Lease => ({
  subnet: Ip4Net.parse(subnet),
  attrs: { publicIP: '192.0.2.20' },
  expiration: new Date(Date.now() + 86_400_000),
})

function fixedRegistry(subnet = OWN) {
  const acquired: LeaseAttrs[] = []
  const released: Lease[] = []
  const registry: SubnetRegistry = {
    getNetworkConfig: async () => config,
    acquireLease: async (attrs) => {
      acquired.push(attrs)
      return { ...lease(subnet), attrs }
    },
    renewLease: async (l) => l,
    releaseLease: async (l) => {
      released.push(l)
    },
    watchLeases: () => EMPTY,
    close: async () => {},
  }
  return { registry, acquired, released }
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

// Application Default Credentials as on a VM: no key file, no well-known
// gcloud file, the metadata server (the emulator) hands out the tokens.
const saved = {
  home: process.env.HOME,
  gac: process.env.GOOGLE_APPLICATION_CREDENTIALS,
  host: process.env.GCE_METADATA_HOST,
}
let home: string
beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'flgce-'))
  process.env.HOME = home
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS
})
afterAll(() => {
  for (const [key, value] of [
    ['HOME', saved.home],
    ['GOOGLE_APPLICATION_CREDENTIALS', saved.gac],
    ['GCE_METADATA_HOST', saved.host],
  ] as const) {
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  rmSync(home, { recursive: true, force: true })
})

let emu: GceEmulator
beforeEach(async () => {
  emu = await startGceEmulator()
  process.env.GCE_METADATA_HOST = emu.metadataHost
})
afterEach(async () => {
  await emu.close()
})

function setup(options: GceOptions = {}, subnet = OWN) {
  const reg = fixedRegistry(subnet)
  const ctx: BackendContext = {
    registry: reg.registry,
    extIface: { name: 'eth0', index: 2, mtu: 1460, ifaceAddr: '192.0.2.20', extAddr: '192.0.2.20' },
  }
  const backend = new GceBackend(ctx, { apiEndpoint: emu.url, pollIntervalMs: 1, ...options })
  return { backend, ...reg }
}

const calls = () =>
  emu.requests.map(
    (r) => `${r.method} ${r.path.replace(`/compute/v1/projects/${emu.project}`, '')}`,
  )
const routeTable = () =>
  [...emu.routes.values()]
    .map((r) => `${r.name} ${r.destRange} -> ${r.nextHopInstance ?? r.nextHopGateway}`)
    .sort()

describe('GceBackend against the local Compute REST endpoint (real @google-cloud/compute, REST transport)', () => {
  it('reads metadata, looks up the instance and inserts the route as flanneld does', async () => {
    const { backend, acquired } = setup()
    const network = await backend.registerNetwork(config)
    expect(network.lease.subnet.toString()).toBe(OWN)
    expect(network.mtu).toBe(1460)
    expect(acquired).toEqual([{ publicIP: '192.0.2.20' }])
    // flanneld's metadata order; ADC then asks the same server for a token.
    expect(emu.metadataRequests.slice(0, 4)).toEqual([
      '/instance/network-interfaces/0/network',
      '/project/project-id',
      '/instance/hostname',
      '/instance/zone',
    ])
    expect(emu.metadataRequests).toContain('/instance/service-accounts/default/token')
    expect(calls()).toEqual([
      `GET /zones/${emu.zone}/instances/${emu.instanceName}`,
      `GET /global/routes/${ROUTE}`,
      'POST /global/routes',
      expect.stringMatching(/^POST \/global\/operations\/operation-[^/]+\/wait$/),
    ])
    const insert = emu.requests[2]
    expect(insert?.body).toEqual({
      name: ROUTE,
      destRange: OWN,
      network: emu.networkLink,
      nextHopInstance: emu.instanceLink,
      priority: 1000,
    })
    expect(emu.requests.every((r) => r.authorization?.startsWith('Bearer ya29.test-'))).toBe(true)
    expect(routeTable()).toEqual([`${ROUTE} ${OWN} -> ${emu.instanceLink}`])
  })

  it('changes nothing on a restart when the route is right', async () => {
    await setup().backend.registerNetwork(config)
    emu.requests.length = 0
    await setup().backend.registerNetwork(config)
    expect(calls()).toEqual([
      `GET /zones/${emu.zone}/instances/${emu.instanceName}`,
      `GET /global/routes/${ROUTE}`,
    ])
  })

  it('deletes a route with another next hop, waits, then inserts', async () => {
    const other = emu.addInstance('node-2')
    emu.addRoute({ name: ROUTE, destRange: OWN, nextHopInstance: other })
    emu.options.pendingPolls = 2 // each operation reports RUNNING once before DONE
    await setup().backend.registerNetwork(config)
    expect(calls().map((c) => c.replace(/operation-[^/]+/, 'OP'))).toEqual([
      `GET /zones/${emu.zone}/instances/${emu.instanceName}`,
      `GET /global/routes/${ROUTE}`,
      `DELETE /global/routes/${ROUTE}`,
      'POST /global/operations/OP/wait',
      'POST /global/operations/OP/wait',
      'POST /global/routes',
      'POST /global/operations/OP/wait',
      'POST /global/operations/OP/wait',
    ])
    expect(routeTable()).toEqual([`${ROUTE} ${OWN} -> ${emu.instanceLink}`])
  })

  it('uses options instead of metadata', async () => {
    emu.addInstance('custom', 'europe-west1-c')
    await setup({
      project: emu.project,
      zone: 'europe-west1-c',
      instanceName: 'custom',
      network: emu.network,
    }).backend.registerNetwork(config)
    expect(
      emu.metadataRequests.filter((p) => !p.includes('service-accounts') && p !== '/instance'),
    ).toEqual([])
    expect([...emu.routes.values()][0]?.nextHopInstance).toMatch(
      /zones\/europe-west1-c\/instances\/custom$/,
    )
  })

  it('collects stale flannel- routes of subnets without a live lease and keeps foreign ones', async () => {
    const peer = emu.addInstance('node-2')
    const otherNet = emu.networkLink.replace(/networks\/.*/, 'networks/other')
    emu.addRoute({ name: 'flannel-10-5-7-0-24', destRange: '10.5.7.0/24', nextHopInstance: peer }) // live
    emu.addRoute({ name: 'flannel-10-5-8-0-24', destRange: '10.5.8.0/24', nextHopInstance: peer }) // stale
    emu.addRoute({
      name: 'flannel-10-5-9-0-24',
      destRange: '10.5.9.0/24',
      nextHopInstance: peer,
      network: otherNet,
    }) // other network
    emu.addRoute({ name: 'ops-10-5-10-0-24', destRange: '10.5.10.0/24', nextHopInstance: peer }) // not flannel's name
    emu.addRoute({
      name: 'flannel-172-16-0-0-16',
      destRange: '172.16.0.0/16',
      nextHopInstance: peer,
    }) // outside Network
    emu.addRoute({
      name: 'default-internet',
      destRange: '0.0.0.0/0',
      nextHopGateway: `${emu.networkLink}/gateways/x`,
    })

    const network = await setup({ collectDelayMs: 0 }).backend.registerNetwork(config)
    const events = new Subject<LeaseEvent[]>()
    const seen: NetworkEvent[] = []
    const sub = network.run(events).subscribe((e) => seen.push(e))
    const repaired = () => seen.filter((e) => e.type === 'repaired').length
    const wait = async (n: number): Promise<void> => {
      for (let i = 0; i < 500 && repaired() < n; i++) await new Promise((r) => setTimeout(r, 10))
    }
    try {
      events.next([{ type: 'added', lease: lease('10.5.7.0/24') }])
      await wait(1)
      expect(routeTable()).toEqual([
        `default-internet 0.0.0.0/0 -> ${emu.networkLink}/gateways/x`,
        `flannel-10-5-34-0-24 ${OWN} -> ${emu.instanceLink}`,
        `flannel-10-5-7-0-24 10.5.7.0/24 -> ${peer}`,
        `flannel-10-5-9-0-24 10.5.9.0/24 -> ${peer}`,
        `flannel-172-16-0-0-16 172.16.0.0/16 -> ${peer}`,
        `ops-10-5-10-0-24 10.5.10.0/24 -> ${peer}`,
      ])
      const deletes = () =>
        emu.requests.filter((r) => r.method === 'DELETE').map((r) => r.path.split('/').pop())
      expect(deletes()).toEqual(['flannel-10-5-8-0-24'])
      expect(
        emu.requests.some((r) => r.method === 'GET' && r.path.endsWith('/global/routes')),
      ).toBe(true)

      events.next([{ type: 'removed', lease: lease('10.5.7.0/24') }])
      await wait(2)
      expect(deletes()).toEqual(['flannel-10-5-8-0-24', 'flannel-10-5-7-0-24'])
      expect(emu.routes.has(ROUTE)).toBe(true)
    } finally {
      sub.unsubscribe()
    }
  })

  it('reads every page of routes.list', async () => {
    const peer = emu.addInstance('node-2')
    for (let i = 0; i < 520; i++) {
      emu.addRoute({ name: `ops-${i}`, destRange: `172.16.${i % 250}.0/24`, nextHopInstance: peer })
    }
    emu.addRoute({ name: 'flannel-10-5-99-0-24', destRange: '10.5.99.0/24', nextHopInstance: peer })
    const network = await setup({ collectDelayMs: 0 }).backend.registerNetwork(config)
    const events = new Subject<LeaseEvent[]>()
    const seen: NetworkEvent[] = []
    const sub = network.run(events).subscribe((e) => seen.push(e))
    try {
      events.next([])
      for (let i = 0; i < 500 && !seen.some((e) => e.type === 'repaired'); i++)
        await new Promise((r) => setTimeout(r, 10))
      expect(emu.routes.has('flannel-10-5-99-0-24')).toBe(false)
      expect(
        emu.requests
          .filter((r) => r.path.endsWith('/global/routes') && r.method === 'GET')
          .map((r) => r.query.pageToken ?? ''),
      ).toEqual(['', '500'])
    } finally {
      sub.unsubscribe()
    }
  })

  it('turns an exhausted route quota into RouteLimitError and releases the lease', async () => {
    emu.options.routeQuota = 1
    emu.addRoute({ name: 'ops-a', destRange: '172.16.0.0/24', nextHopInstance: emu.instanceLink })
    const { backend, released } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(RouteLimitError)
    expect(err).toMatchObject({
      code: 'ROUTE_LIMIT',
      table: `projects/${emu.project}/global/routes`,
      count: 1,
    })
    expect((err as Error).message).toContain("Quota 'ROUTES' exceeded")
    expect(emu.routes.has(ROUTE)).toBe(false)
    expect(released.map((l) => l.subnet.toString())).toEqual([OWN])
  })

  it('types operation errors and puts back the route it deleted', async () => {
    const other = emu.addInstance('node-2')
    emu.addRoute({ name: ROUTE, destRange: OWN, nextHopInstance: other })
    emu.failOperation({
      method: 'POST',
      path: /\/global\/routes$/,
      code: 'RESOURCE_NOT_READY',
      message: 'The resource is not ready',
    })
    const { backend, released } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(GceOperationError)
    expect((err as Error).message).toMatch(
      /^error running operation: RESOURCE_NOT_READY: The resource is not ready/,
    )
    expect(err).toMatchObject({ errorCodes: ['RESOURCE_NOT_READY'] })
    // Nothing half-applied: the old route is back as it was, the lease released.
    expect(routeTable()).toEqual([`${ROUTE} ${OWN} -> ${other}`])
    expect(released).toHaveLength(1)
  })

  it('types API errors on routes.get with flanneld context', async () => {
    emu.fail({
      method: 'GET',
      path: /\/global\/routes\//,
      status: 500,
      reason: 'backendError',
      message: 'Internal error',
    })
    const { backend, released } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(isFlannelError(err, 'GCE_API_ERROR')).toBe(true)
    expect((err as Error).message).toMatch(
      /^error handling matching route: error getting the route err: .*Internal error/,
    )
    expect(err).toMatchObject({ httpStatus: 500, reason: 'backendError', retryable: true })
    expect(released).toHaveLength(1)
    expect(emu.routes.size).toBe(0)
  })

  it('gives GceAuthError when the API refuses the credentials, before leasing', async () => {
    emu.fail({
      method: 'GET',
      path: /\/instances\//,
      status: 403,
      reason: 'forbidden',
      message: "Required 'compute.instances.get' permission",
    })
    const { backend, acquired } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(GceAuthError)
    expect(err).toMatchObject({ code: 'GCE_AUTH_FAILED', httpStatus: 403 })
    expect(acquired).toEqual([])
  })

  it('gives GceDiscoveryError for an unknown instance, before leasing', async () => {
    const { backend, acquired } = setup({ instanceName: 'ghost' })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(GceDiscoveryError)
    expect((err as Error).message).toContain('ghost')
    expect(acquired).toEqual([])
  })

  it('gives GceMetadataError naming the missing value, before any API call', async () => {
    delete emu.metadata['/instance/hostname']
    const { backend, acquired } = setup()
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(GceMetadataError)
    expect((err as Error).message).toBe(
      'error getting instance name: HTTP 404 for /instance/hostname',
    )
    expect(err).toMatchObject({ path: '/instance/hostname' })
    expect(acquired).toEqual([])
    expect(emu.requests).toEqual([])
  })

  it('gives GceMetadataError when the metadata server is unreachable', async () => {
    const { backend } = setup({ metadataEndpoint: 'http://127.0.0.1:9', metadataTimeoutMs: 2000 })
    const err = await rejection(backend.registerNetwork(config))
    expect(err).toBeInstanceOf(GceMetadataError)
    expect((err as Error).message).toMatch(/^error getting network metadata: /)
  })

  it('on abort while the insert runs, lets it finish, removes the route and releases the lease', async () => {
    emu.options.pendingPolls = 4
    const abort = new AbortController()
    const { backend, released } = setup({ pollIntervalMs: 20 })
    const waits = () => emu.requests.filter((r) => r.path.endsWith('/wait')).length
    const watcher = setInterval(() => {
      if (
        emu.requests.some((r) => r.method === 'POST' && r.path.endsWith('/global/routes')) &&
        waits() >= 1
      ) {
        abort.abort()
      }
    }, 1)
    try {
      const err = await rejection(backend.registerNetwork(config, { signal: abort.signal }))
      expect(isFlannelError(err, 'ABORTED')).toBe(true)
    } finally {
      clearInterval(watcher)
    }
    expect(emu.routes.size).toBe(0)
    expect(
      emu.requests.filter((r) => r.method === 'DELETE').map((r) => r.path.split('/').pop()),
    ).toEqual([ROUTE])
    expect(released).toHaveLength(1)
  })

  it('stops at once on an aborted signal', async () => {
    const { backend, acquired } = setup()
    const err = await rejection(backend.registerNetwork(config, { signal: AbortSignal.abort() }))
    expect(isFlannelError(err, 'ABORTED')).toBe(true)
    expect(acquired).toEqual([])
    expect(emu.metadataRequests).toEqual([])
  })
})
