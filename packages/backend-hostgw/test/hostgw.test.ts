import {
  Ip4Net,
  MemoryRegistry,
  isFlannelError,
  parseIp4,
  parseNetworkConfig,
  type ExternalInterface,
  type LeaseEvent,
  type NetworkEvent,
} from '@flannel/core'
import { FLANNEL_ROUTE_PROTOCOL, RTPROT_BOOT } from '@flannel/linux'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { Subject, firstValueFrom, filter, timeout } from 'rxjs'
import { afterEach, describe, expect, it } from 'vitest'
import { HostGwBackend, PublicIpNotLocalError, createBackend } from '../src/index.js'
import { peer } from './helpers/peer-lease.js'

const json4 = { Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }
const json46 = {
  Network: '10.244.0.0/16',
  EnableIPv6: true,
  IPv6Network: 'fd00:10::/56',
  Backend: { Type: 'host-gw' },
}
const config4 = parseNetworkConfig(json4)
const config46 = parseNetworkConfig(json46)

/** core's in-memory registry; its first pick (random 0) is 10.244.1.0/24, as the rigs expect. */
function leaseRegistry(json: object): MemoryRegistry {
  return new MemoryRegistry(json, { random: () => 0 })
}

interface Rig {
  host: MemoryHostNetwork
  ext: ExternalInterface
  events$: Subject<LeaseEvent[]>
  seen: NetworkEvent[]
  stop: () => void
  next: (pred: (e: NetworkEvent) => boolean) => Promise<NetworkEvent>
}

const rigs: Rig[] = []
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop()
})

async function rig(
  options: {
    v6?: boolean
    prepare?: (host: MemoryHostNetwork, ethIndex: number) => Promise<void>
  } = {},
): Promise<Rig> {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0', mtu: 1500 }] })
  const eth = (await host.getLink('eth0'))!
  await host.addAddress({
    linkIndex: eth.index,
    family: 'inet',
    address: '192.0.2.1',
    prefixLength: 24,
  })
  if (options.v6) {
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet6',
      address: '2001:db8::1',
      prefixLength: 64,
    })
  }
  await options.prepare?.(host, eth.index)
  const ext: ExternalInterface = {
    name: 'eth0',
    index: eth.index,
    mtu: 1500,
    ifaceAddr: '192.0.2.1',
    extAddr: '192.0.2.1',
    ...(options.v6 ? { ifaceV6Addr: '2001:db8::1', extV6Addr: '2001:db8::1' } : {}),
  }
  const config = options.v6 ? config46 : config4
  const registry = leaseRegistry(options.v6 ? json46 : json4)
  const backend = new HostGwBackend(
    { registry, extIface: ext },
    { host, repairDelayMs: 1, checkIntervalMs: 60_000 },
  )
  const network = await backend.registerNetwork(config)
  const events$ = new Subject<LeaseEvent[]>()
  const seen: NetworkEvent[] = []
  const out = new Subject<NetworkEvent>()
  out.subscribe((e) => seen.push(e))
  const sub = network.run(events$).subscribe(out)
  const r: Rig = {
    host,
    ext,
    events$,
    seen,
    stop: () => sub.unsubscribe(),
    next: (pred) => firstValueFrom(out.pipe(filter(pred), timeout(2000))),
  }
  rigs.push(r)
  return r
}

/** Waits until the backend's queue has drained (it emits once per batch at least). */
async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await new Promise((r) => setImmediate(r))
}

describe('HostGwBackend.registerNetwork', () => {
  it('acquires a host-gw lease publishing the interface address; MTU is the interface MTU', async () => {
    const host = new MemoryHostNetwork({ links: [{ name: 'eth0', mtu: 9000 }] })
    const eth = (await host.getLink('eth0'))!
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet',
      address: '192.0.2.1',
      prefixLength: 24,
    })
    const registry = leaseRegistry(json4)
    const ext = {
      name: 'eth0',
      index: eth.index,
      mtu: 9000,
      ifaceAddr: '192.0.2.1',
      extAddr: '192.0.2.1',
    }
    const callsBefore = host.calls.length
    const network = await new HostGwBackend({ registry, extIface: ext }, { host }).registerNetwork(
      config4,
    )
    expect(registry.listLeases().map((l) => l.attrs)).toEqual([
      { publicIP: '192.0.2.1', backendType: 'host-gw' },
    ])
    expect(network.mtu).toBe(9000)
    expect(network.lease.subnet.toString()).toBe('10.244.1.0/24')
    expect(host.calls.length).toBe(callsBefore) // nothing written at registration
  })

  it('refuses a PublicIP that differs from the interface address, with flanneld message', async () => {
    const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
    const registry = leaseRegistry(json4)
    const ext = {
      name: 'eth0',
      index: 2,
      mtu: 1500,
      ifaceAddr: '192.0.2.1',
      extAddr: '203.0.113.9',
    }
    const error = await new HostGwBackend({ registry, extIface: ext }, { host })
      .registerNetwork(config4)
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(PublicIpNotLocalError)
    expect(isFlannelError(error, 'HOSTGW_PUBLIC_IP_NOT_LOCAL')).toBe(true)
    expect((error as Error).message).toBe(
      "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend",
    )
    expect(registry.listLeases()).toEqual([])
  })

  it('refuses when the interface does not hold the address', async () => {
    const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
    const registry = leaseRegistry(json4)
    const ext = { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.1', extAddr: '192.0.2.1' }
    await expect(
      new HostGwBackend({ registry, extIface: ext }, { host }).registerNetwork(config4),
    ).rejects.toThrow('host-gw: PublicIP 192.0.2.1 is not an address of interface eth0')
  })

  it('gives the lease back when aborted while acquiring', async () => {
    const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
    const eth = (await host.getLink('eth0'))!
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet',
      address: '192.0.2.1',
      prefixLength: 24,
    })
    const registry = leaseRegistry(json4)
    const controller = new AbortController()
    const acquire = registry.acquireLease.bind(registry)
    const acquired: string[] = []
    registry.acquireLease = async (attrs) => {
      const lease = await acquire(attrs)
      acquired.push(lease.subnet.toString())
      controller.abort()
      return lease
    }
    const ext = {
      name: 'eth0',
      index: eth.index,
      mtu: 1500,
      ifaceAddr: '192.0.2.1',
      extAddr: '192.0.2.1',
    }
    const error = await new HostGwBackend({ registry, extIface: ext }, { host })
      .registerNetwork(config4, { signal: controller.signal })
      .catch((e: unknown) => e)
    expect(isFlannelError(error, 'ABORTED')).toBe(true)
    expect(acquired).toEqual(['10.244.1.0/24'])
    expect(registry.listLeases()).toEqual([])
  })

  it('createBackend builds a host-gw backend', () => {
    const registry = leaseRegistry(json4)
    expect(createBackend({ registry, extIface: { name: 'eth0', index: 2, mtu: 1500 } }).type).toBe(
      'host-gw',
    )
  })
})

describe('HostGwNetwork.run', () => {
  it('routes a peer subnet via its PublicIP on the external interface, idempotently', async () => {
    const r = await rig()
    const lease = peer('10.244.2.0/24', '192.0.2.2')
    r.events$.next([{ type: 'added', lease }])
    r.events$.next([{ type: 'added', lease }])
    await settle()
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([
      expect.objectContaining({
        family: 'inet',
        dst: '10.244.2.0/24',
        gateway: '192.0.2.2',
        linkIndex: r.ext.index,
      }),
    ])
    expect(r.seen.filter((e) => e.type === 'applied')).toHaveLength(2)
    expect(r.host.calls.filter((c) => c.method === 'replaceRoute')).toHaveLength(2)
    expect(r.host.calls.some((c) => c.args.some((a) => (a as { onlink?: boolean }).onlink))).toBe(
      false,
    )
  })

  it('removes the route when the lease is removed', async () => {
    const r = await rig()
    const lease = peer('10.244.2.0/24', '192.0.2.2')
    r.events$.next([{ type: 'added', lease }])
    r.events$.next([{ type: 'removed', lease }])
    await settle()
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
    expect(r.seen.map((e) => e.type === 'applied' && e.action)).toEqual(['add', 'remove'])
  })

  it('follows a subnet that moved to another PublicIP and ignores the late removal of the old lease', async () => {
    const r = await rig()
    const old = peer('10.244.2.0/24', '192.0.2.2')
    const moved = peer('10.244.2.0/24', '192.0.2.22')
    r.events$.next([{ type: 'added', lease: old }])
    r.events$.next([{ type: 'added', lease: moved }])
    r.events$.next([{ type: 'removed', lease: old }])
    await settle()
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => [
        x.dst,
        x.gateway,
      ]),
    ).toEqual([['10.244.2.0/24', '192.0.2.22']])
    expect(r.seen.at(-1)).toEqual({
      type: 'ignored',
      lease: old,
      reason: 'removal of 10.244.2.0/24 via 192.0.2.2 ignored: now routed via 192.0.2.22',
    })
  })

  it('drops a peer route when its lease is replaced by a value host-gw does not use, so the later removal leaves nothing behind', async () => {
    const r = await rig()
    const own = peer('10.244.2.0/24', '192.0.2.2')
    const retyped = peer('10.244.2.0/24', '192.0.2.22', 'vxlan')
    const unaddressed = peer('10.244.3.0/24', '')
    r.events$.next([
      { type: 'added', lease: own },
      { type: 'added', lease: peer('10.244.3.0/24', '192.0.2.3') },
    ])
    r.events$.next([
      { type: 'added', lease: retyped },
      { type: 'added', lease: unaddressed },
    ])
    await settle()
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
    r.events$.next([
      { type: 'removed', lease: retyped },
      { type: 'removed', lease: unaddressed },
    ])
    await settle()
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
  })

  it('ignores leases of other backends, added and removed', async () => {
    const r = await rig()
    const lease = peer('10.244.3.0/24', '192.0.2.3', 'vxlan')
    r.events$.next([
      { type: 'added', lease },
      { type: 'removed', lease },
    ])
    await settle()
    expect(r.seen).toEqual([
      { type: 'ignored', lease, reason: 'Ignoring non-host-gw subnet: type=vxlan' },
      { type: 'ignored', lease, reason: 'Ignoring non-host-gw subnet: type=vxlan' },
    ])
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
  })

  it('reports a peer whose PublicIP is not on-link and installs nothing for it', async () => {
    const r = await rig()
    const lease = peer('10.244.4.0/24', '198.51.100.4')
    r.events$.next([{ type: 'added', lease }])
    await settle()
    expect(r.seen).toEqual([
      {
        type: 'ignored',
        lease,
        reason: 'peer PublicIP 198.51.100.4 is not on-link on eth0; no route to 10.244.4.0/24',
      },
    ])
    expect(await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
  })

  it('adopts matching routes and deletes owned routes no lease wants after the first batch', async () => {
    const r = await rig({
      prepare: async (host, eth) => {
        // left by flanneld (proto boot) for a lease that still exists
        await host.addRoute({
          family: 'inet',
          dst: '10.244.2.0/24',
          gateway: '192.0.2.2',
          linkIndex: eth,
          protocol: RTPROT_BOOT,
        })
        // ours, for a lease that is gone
        await host.addRoute({
          family: 'inet',
          dst: '10.244.9.0/24',
          gateway: '192.0.2.9',
          linkIndex: eth,
          protocol: FLANNEL_ROUTE_PROTOCOL,
        })
        // somebody else's
        await host.addRoute({
          family: 'inet',
          dst: '172.16.0.0/16',
          gateway: '192.0.2.254',
          linkIndex: eth,
          protocol: 4,
        })
      },
    })
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    const routes = (await r.host.listRoutes({ family: 'inet' })).filter((x) => x.gateway)
    expect(routes.map((x) => [x.dst, x.gateway, x.protocol])).toEqual([
      ['10.244.2.0/24', '192.0.2.2', FLANNEL_ROUTE_PROTOCOL],
      ['172.16.0.0/16', '192.0.2.254', 4],
    ])
    expect(r.seen).toContainEqual({
      type: 'repaired',
      what: 'stale route removed',
      detail: '10.244.9.0/24 via 192.0.2.9',
    })
  })

  it('never routes its own lease, even when the stream carries it; such a first batch still cleans up', async () => {
    const r = await rig({
      prepare: async (host, eth) => {
        // ours, for a lease that is gone
        await host.addRoute({
          family: 'inet',
          dst: '10.244.9.0/24',
          gateway: '192.0.2.9',
          linkIndex: eth,
          protocol: FLANNEL_ROUTE_PROTOCOL,
        })
      },
    })
    // the registry's stream as is: the first batch holds only this host's lease (10.244.1.0/24)
    r.events$.next([{ type: 'added', lease: peer('10.244.1.0/24', '192.0.2.1') }])
    await settle()
    const routes = (await r.host.listRoutes({ family: 'inet' })).filter((x) => x.gateway)
    expect(routes).toEqual([])
    expect(r.seen).toContainEqual({
      type: 'repaired',
      what: 'stale route removed',
      detail: '10.244.9.0/24 via 192.0.2.9',
    })
  })

  it('never cleans routes when told to use a shared protocol such as boot', async () => {
    const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
    const eth = (await host.getLink('eth0'))!
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet',
      address: '192.0.2.1',
      prefixLength: 24,
    })
    await host.addRoute({
      family: 'inet',
      dst: '172.16.0.0/16',
      gateway: '192.0.2.254',
      linkIndex: eth.index,
      protocol: RTPROT_BOOT,
    })
    const ext = {
      name: 'eth0',
      index: eth.index,
      mtu: 1500,
      ifaceAddr: '192.0.2.1',
      extAddr: '192.0.2.1',
    }
    const backend = new HostGwBackend(
      { registry: leaseRegistry(json4), extIface: ext },
      { host, routeProtocol: RTPROT_BOOT },
    )
    const events$ = new Subject<LeaseEvent[]>()
    const sub = (await backend.registerNetwork(config4)).run(events$).subscribe()
    events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    sub.unsubscribe()
    expect((await host.listRoutes({ protocol: RTPROT_BOOT })).map((r) => r.dst).sort()).toEqual([
      '10.244.2.0/24',
      '172.16.0.0/16',
    ])
  })

  it('restores a deleted route promptly from the route notification', async () => {
    const r = await rig()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    const repaired = r.next((e) => e.type === 'repaired')
    await r.host.deleteRoute({ family: 'inet', dst: '10.244.2.0/24' })
    expect(await repaired).toEqual({
      type: 'repaired',
      what: 'route',
      detail: '10.244.2.0/24 via 192.0.2.2',
    })
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => x.dst),
    ).toEqual(['10.244.2.0/24'])
  })

  it('puts back a route someone pointed elsewhere', async () => {
    const r = await rig()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    const repaired = r.next((e) => e.type === 'repaired')
    await r.host.replaceRoute({
      family: 'inet',
      dst: '10.244.2.0/24',
      gateway: '192.0.2.77',
      linkIndex: r.ext.index,
    })
    await repaired
    expect(
      (await r.host.listRoutes({ family: 'inet' })).find((x) => x.dst === '10.244.2.0/24'),
    ).toMatchObject({
      gateway: '192.0.2.2',
      protocol: FLANNEL_ROUTE_PROTOCOL,
    })
  })

  it('re-checks everything after notifications were lost', async () => {
    const r = await rig()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    // Delete silently (as a kernel flush would), then signal an overflow.
    r.host.failNext('listRoutes', 'EINTR')
    const warning = r.next((e) => e.type === 'warning')
    r.host.simulateOverflow()
    expect(await warning).toMatchObject({ type: 'warning', message: 'could not list inet routes' })
    const repaired = r.next((e) => e.type === 'repaired')
    await r.host.setLinkUp(r.ext.index, false) // flushes the route, link notification
    await r.host.setLinkUp(r.ext.index, true)
    await repaired
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => x.dst),
    ).toEqual(['10.244.2.0/24'])
  })

  it('reports a failed add, keeps the other peers, and retries on the next check', async () => {
    const r = await rig()
    r.host.failNext(
      'replaceRoute',
      'EPERM',
      (args) => (args[0] as { dst: string }).dst === '10.244.2.0/24',
    )
    const a = peer('10.244.2.0/24', '192.0.2.2')
    const b = peer('10.244.3.0/24', '192.0.2.3')
    r.events$.next([
      { type: 'added', lease: a },
      { type: 'added', lease: b },
    ])
    await settle()
    expect(r.seen[0]).toMatchObject({
      type: 'failed',
      action: 'add',
      lease: a,
      error: { errno: 'EPERM' },
    })
    expect(r.seen[1]).toEqual({ type: 'applied', action: 'add', lease: b })
    // The initial full check after the first batch already retried it.
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => x.dst).sort(),
    ).toEqual(['10.244.2.0/24', '10.244.3.0/24'])
  })

  it('routes IPv6 subnets via PublicIPv6 when IPv6 is enabled', async () => {
    const r = await rig({ v6: true })
    r.events$.next([
      {
        type: 'added',
        lease: peer('10.244.2.0/24', '192.0.2.2', 'host-gw', {
          subnet: 'fd00:10:0:2::/64',
          ip: '2001:db8::2',
        }),
      },
    ])
    await settle()
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => [
        x.family,
        x.dst,
        x.gateway,
      ]),
    ).toEqual([
      ['inet', '10.244.2.0/24', '192.0.2.2'],
      ['inet6', 'fd00:10:0:2::/64', '2001:db8::2'],
    ])
  })

  it('closes its notification subscription on unsubscribe and leaves routes in place', async () => {
    const r = await rig()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2') }])
    await settle()
    expect(r.host.subscriberCount).toBe(1)
    r.stop()
    expect(r.host.subscriberCount).toBe(0)
    expect(r.events$.observed).toBe(false)
    expect(
      (await r.host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).map((x) => x.dst),
    ).toEqual(['10.244.2.0/24'])
  })
})

describe('HostGwBackend and leases it must not act on (issue 12)', () => {
  /** Every route of the host, as sorted text. */
  async function routes(host: MemoryHostNetwork): Promise<string[]> {
    return (await host.listRoutes())
      .map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.linkIndex} proto ${r.protocol}`)
      .sort()
  }
  /** Sends `batches`, then adds and removes a sentinel peer: once that is done, everything before it was applied. */
  async function sendAndSettle(r: Rig, batches: LeaseEvent[][]): Promise<void> {
    for (const b of batches) r.events$.next(b)
    const sentinel = peer('10.244.250.0/24', '192.0.2.250')
    r.events$.next([{ type: 'added', lease: sentinel }])
    await r.next((e) => e.type === 'applied' && e.action === 'add' && e.lease === sentinel)
    r.events$.next([{ type: 'removed', lease: sentinel }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove' && e.lease === sentinel)
  }

  it("never lets a hostile key take over or delete a peer's route, the pod route via cni0, or the underlay route", async () => {
    const r = await rig()
    const cni0 = r.host.addLink({ name: 'cni0', kind: 'bridge' })
    await r.host.addAddress({
      linkIndex: cni0.index,
      family: 'inet',
      address: '10.244.1.1',
      prefixLength: 24,
    })
    r.events$.next([{ type: 'added', lease: peer('10.244.85.0/24', '192.0.2.2') }])
    await r.next((e) => e.type === 'applied' && e.action === 'add')
    const before = await routes(r.host)
    const hostile = [
      peer(new Ip4Net(parseIp4('10.244.85.5'), 24), '192.0.2.66'), // a peer's subnet with host bits
      peer(new Ip4Net(parseIp4('10.244.1.5'), 24), '192.0.2.66'), // the own one with host bits
      peer('10.244.85.0/24', '192.0.2.66', 'host-gw', {
        subnet: 'fd00:10:0:85::/64',
        ip: '2001:db8::66',
      }),
      peer('10.244.1.128/25', '192.0.2.66'),
      peer('192.0.2.0/24', '192.0.2.66'), // the underlay, outside the network
      peer('0.0.0.0/0', '192.0.2.66'),
    ]
    await sendAndSettle(r, [
      hostile.map((lease): LeaseEvent => ({ type: 'added', lease })),
      hostile.map((lease): LeaseEvent => ({ type: 'removed', lease })),
    ])
    expect(await routes(r.host)).toEqual(before)
    expect(before).toContain(`10.244.1.0/24 via - dev ${cni0.index} proto 2`)
    expect(before).toContain(
      `10.244.85.0/24 via 192.0.2.2 dev ${r.ext.index} proto ${FLANNEL_ROUTE_PROTOCOL}`,
    )
  })
})
