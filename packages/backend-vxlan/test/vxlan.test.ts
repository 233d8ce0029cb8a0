import {
  Ip4Net,
  Ip6Net,
  isFlannelError,
  parseIp4,
  parseNetworkConfig,
  type ExternalInterface,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type NetworkConfig,
  type NetworkEvent,
  type StoredAttrs,
  type SubnetRegistry,
} from '@flannel/core'
import { encodeLeaseAttrs } from '@flannel/core/registry'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { NEVER, Subject, filter, firstValueFrom, timeout, type Observable } from 'rxjs'
import { afterEach, describe, expect, it } from 'vitest'
import { VxlanBackend, createBackend, type VxlanOptions } from '../src/index.js'

/** Hands out one fixed lease; records acquisitions and releases. */
class FixedLeaseRegistry implements SubnetRegistry {
  readonly acquired: LeaseAttrs[] = []
  readonly released: Lease[] = []
  failWith: unknown
  /** What `storedAttrs()` gives (kube mode: the own Node's annotations). */
  stored: StoredAttrs | undefined
  storedReads = 0
  constructor(
    private readonly config: NetworkConfig,
    private readonly subnet = '10.244.1.0/24',
    private readonly ipv6Subnet?: string,
  ) {}
  async getNetworkConfig(): Promise<NetworkConfig> {
    return this.config
  }
  async acquireLease(attrs: LeaseAttrs): Promise<Lease> {
    if (this.failWith) throw this.failWith
    this.acquired.push(attrs)
    return {
      subnet: Ip4Net.parse(this.subnet),
      ...(this.ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(this.ipv6Subnet) } : {}),
      attrs,
      expiration: new Date(Date.now() + 86_400_000),
    }
  }
  async renewLease(lease: Lease): Promise<Lease> {
    return lease
  }
  async releaseLease(lease: Lease): Promise<void> {
    this.released.push(lease)
  }
  watchLeases(): Observable<never> {
    return NEVER
  }
  async storedAttrs(): Promise<StoredAttrs | undefined> {
    this.storedReads++
    return this.stored
  }
  async close(): Promise<void> {}
}

function peer(
  subnet: string | Ip4Net,
  publicIP: string,
  mac: string,
  extra: Partial<LeaseAttrs> & { ipv6Subnet?: string } = {},
): Lease {
  const { ipv6Subnet, ...attrs } = extra
  return {
    subnet: typeof subnet === 'string' ? Ip4Net.parse(subnet) : subnet,
    ...(ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(ipv6Subnet) } : {}),
    attrs: { publicIP, backendType: 'vxlan', backendData: { VNI: 1, VtepMAC: mac }, ...attrs },
    expiration: new Date(Date.now() + 86_400_000),
  }
}

const MAC_B = '02:00:00:00:00:0b'

/**
 * The kernel keeps flannel.1 and flannel-v6.1 (same VNI and port, different
 * families) side by side; an in-memory HostNetwork that refuses that cannot
 * run the dual-stack cases.
 */
async function memoryRejectsDualStackPair(): Promise<string | undefined> {
  const h = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
  await h.createVxlanLink({ name: 'a', vni: 1, local: '192.0.2.1' })
  try {
    await h.createVxlanLink({ name: 'b', vni: 1, local: '2001:db8::1' })
    return undefined
  } catch {
    return 'MemoryHostNetwork refuses an IPv4 and an IPv6 vxlan device with the same VNI (the kernel allows it)'
  }
}
const dualStackSkip = await memoryRejectsDualStackPair()
if (dualStackSkip) console.warn(`vxlan dual-stack unit tests skipped: ${dualStackSkip}`)
const MAC_C = '02:00:00:00:00:0c'

function config(backend: Record<string, unknown> = {}, v6 = false): NetworkConfig {
  return parseNetworkConfig({
    Network: '10.244.0.0/16',
    ...(v6 ? { EnableIPv6: true, IPv6Network: 'fd00:10::/56' } : {}),
    Backend: { Type: 'vxlan', ...backend },
  })
}

interface Rig {
  host: MemoryHostNetwork
  registry: FixedLeaseRegistry
  ext: ExternalInterface
  events$: Subject<LeaseEvent[]>
  seen: NetworkEvent[]
  start: (cfg?: NetworkConfig) => Promise<void>
  next: (pred: (e: NetworkEvent) => boolean) => Promise<NetworkEvent>
  stop: () => void
}

const rigs: Rig[] = []
afterEach(() => {
  for (const r of rigs.splice(0)) r.stop()
})

async function rig(opts: { v6?: boolean; options?: VxlanOptions; cfg?: NetworkConfig } = {}) {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0', mtu: 1500 }] })
  const eth = (await host.getLink('eth0'))!
  await host.addAddress({
    linkIndex: eth.index,
    family: 'inet',
    address: '192.0.2.1',
    prefixLength: 24,
  })
  if (opts.v6) {
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet6',
      address: '2001:db8::1',
      prefixLength: 64,
    })
  }
  const cfg = opts.cfg ?? config({}, opts.v6)
  const registry = new FixedLeaseRegistry(
    cfg,
    '10.244.1.0/24',
    opts.v6 ? 'fd00:10:0:1::/64' : undefined,
  )
  const ext: ExternalInterface = {
    name: 'eth0',
    index: eth.index,
    mtu: 1500,
    ifaceAddr: '192.0.2.1',
    extAddr: '192.0.2.1',
    ...(opts.v6 ? { ifaceV6Addr: '2001:db8::1', extV6Addr: '2001:db8::1' } : {}),
  }
  const events$ = new Subject<LeaseEvent[]>()
  const seen: NetworkEvent[] = []
  const out = new Subject<NetworkEvent>()
  let stop = () => {}
  const r: Rig = {
    host,
    registry,
    ext,
    events$,
    seen,
    async start(c = cfg) {
      const backend = new VxlanBackend(
        { registry, extIface: ext },
        {
          host,
          procSys: false,
          checkIntervalMs: 60_000,
          repairDelayMs: 5,
          retryBaseMs: 1,
          ...opts.options,
        },
      )
      const network = await backend.registerNetwork(c)
      const sub = network.run(events$).subscribe((e) => {
        seen.push(e)
        out.next(e)
      })
      stop = () => sub.unsubscribe()
    },
    next: (pred) => firstValueFrom(out.pipe(filter(pred), timeout(2000))),
    stop: () => stop(),
  }
  rigs.push(r)
  return r
}

async function peerState(host: MemoryHostNetwork, dev = 'flannel.1') {
  const link = (await host.getLink(dev))!
  return {
    neigh: (await host.listNeighbours({ linkIndex: link.index })).map(
      (n) => `${n.ip} ${n.mac} ${n.permanent}`,
    ),
    fdb: (await host.listFdb({ linkIndex: link.index })).map(
      (e) => `${e.mac} ${e.dst} ${e.self} ${e.permanent}`,
    ),
    routes: (await host.listRoutes({ linkIndex: link.index }))
      .filter((r) => r.protocol !== 2)
      .map((r) => `${r.dst} via ${r.gateway} onlink=${r.onlink === true}`),
  }
}

describe('VxlanBackend registration', () => {
  it('creates flannel.1 with the defaults and publishes byte-exact BackendData', async () => {
    const r = await rig()
    await r.start()
    const link = (await r.host.getLink('flannel.1'))!
    expect(link.kind).toBe('vxlan')
    expect(link.mtu).toBe(1450)
    expect(link.up).toBe(true)
    expect(link.vxlan).toMatchObject({
      vni: 1,
      port: 8472,
      learning: false,
      gbp: false,
      local: '192.0.2.1',
      lowerIndex: r.ext.index,
    })
    expect(link.mac).toMatch(/^[0-9a-f]{2}(:[0-9a-f]{2}){5}$/)
    expect(parseInt(link.mac!.slice(0, 2), 16) & 3).toBe(2) // locally administered unicast
    const addrs = await r.host.listAddresses({ linkIndex: link.index })
    expect(addrs.map((a) => `${a.address}/${a.prefixLength}`)).toEqual(['10.244.1.0/32'])
    expect(encodeLeaseAttrs(r.registry.acquired[0]!)).toBe(
      `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${link.mac}"}}`,
    )
  })

  it('honours VNI, Port, GBP, Learning and MTU in any key case', async () => {
    const r = await rig({
      cfg: config({ vni: 7, PORT: 4789, gbp: true, Learning: true, mtu: 1400 }),
    })
    const backend = new VxlanBackend(
      { registry: r.registry, extIface: r.ext },
      { host: r.host, procSys: false },
    )
    const network = await backend.registerNetwork(
      config({ vni: 7, PORT: 4789, gbp: true, Learning: true, mtu: 1400 }),
    )
    expect(network.mtu).toBe(1350)
    const link = (await r.host.getLink('flannel.7'))!
    expect(link.vxlan).toMatchObject({ vni: 7, port: 4789, gbp: true, learning: true })
    expect(link.mtu).toBe(1350)
    expect(r.registry.acquired[0]!.backendData).toEqual({ VNI: 7, VtepMAC: link.mac })
  })

  it('rejects a bad option with a ConfigError naming it, creating nothing', async () => {
    const r = await rig()
    for (const bad of [{ VNI: 'one' }, { VNI: 1 << 24 }, { Port: 70000 }, { GBP: 'yes' }]) {
      const err = await r.start(config(bad)).catch((e: unknown) => e)
      expect(isFlannelError(err, 'CONFIG_INVALID')).toBe(true)
      expect((err as Error).message).toContain(`Backend.${Object.keys(bad)[0]}`)
    }
    expect(await r.host.getLink('flannel.1')).toBeUndefined()
    expect(r.registry.acquired).toHaveLength(0)
  })

  it('deletes the device it created when the lease cannot be acquired', async () => {
    const r = await rig()
    r.registry.failWith = new Error('registry down')
    await expect(r.start()).rejects.toThrow('failed to acquire lease: registry down')
    expect(await r.host.getLink('flannel.1')).toBeUndefined()
  })

  it('keeps a compatible device and its MAC, recreates an incompatible one', async () => {
    const r = await rig()
    const eth = r.ext.index
    const kept = await r.host.createVxlanLink({
      name: 'flannel.1',
      vni: 1,
      local: '192.0.2.1',
      lowerIndex: eth,
      mac: MAC_C,
    })
    await r.start()
    expect((await r.host.getLink('flannel.1'))!.index).toBe(kept.index)
    expect(r.registry.acquired[0]!.backendData).toEqual({ VNI: 1, VtepMAC: MAC_C })

    const r2 = await rig()
    await r2.host.createVxlanLink({
      name: 'flannel.1',
      vni: 9,
      local: '192.0.2.1',
      lowerIndex: r2.ext.index,
      mac: MAC_C,
    })
    await r2.start()
    const link = (await r2.host.getLink('flannel.1'))!
    expect(link.vxlan!.vni).toBe(1)
    expect(link.mac).not.toBe(MAC_C)
  })

  it("creates flannel.1 with the VtepMAC of the stored backend data (flanneld's GetStoredMacAddresses)", async () => {
    const r = await rig()
    r.registry.stored = {
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: '0A:58:0a:f4:01:00' },
    }
    await r.start()
    expect(r.registry.storedReads).toBe(1)
    expect((await r.host.getLink('flannel.1'))!.mac).toBe('0a:58:0a:f4:01:00')
    expect(encodeLeaseAttrs(r.registry.acquired[0]!)).toBe(
      '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}}',
    )
  })

  it('keeps an existing compatible device with its own MAC over the stored one, as flanneld', async () => {
    const r = await rig()
    await r.host.createVxlanLink({
      name: 'flannel.1',
      vni: 1,
      local: '192.0.2.1',
      lowerIndex: r.ext.index,
      mac: MAC_C,
    })
    r.registry.stored = { backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' } }
    await r.start()
    expect((await r.host.getLink('flannel.1'))!.mac).toBe(MAC_C)
    expect(r.registry.acquired[0]!.backendData).toEqual({ VNI: 1, VtepMAC: MAC_C })
  })

  it('takes a random MAC when the stored one is multicast, zero or not a MAC', async () => {
    for (const bad of ['01:00:5e:00:00:01', '00:00:00:00:00:00', 'not-a-mac', 42]) {
      const r = await rig()
      r.registry.stored = { backendData: { VNI: 1, VtepMAC: bad } }
      await r.start()
      const mac = (await r.host.getLink('flannel.1'))!.mac!
      expect(mac).not.toBe(bad)
      expect(parseInt(mac.slice(0, 2), 16) & 3).toBe(2)
      r.stop()
    }
  })

  it.skipIf(dualStackSkip !== undefined)(
    `builds flannel-v6.<VNI> with /128 and BackendV6Data in dual-stack mode${dualStackSkip ? ` (skipped: ${dualStackSkip})` : ''}`,
    async () => {
      const r = await rig({ v6: true })
      await r.start()
      const v6 = (await r.host.getLink('flannel-v6.1'))!
      expect(v6.vxlan!.local).toBe('2001:db8::1')
      const addrs = (await r.host.listAddresses({ linkIndex: v6.index, family: 'inet6' })).filter(
        (a) => !a.address.startsWith('fe80'),
      )
      expect(addrs.map((a) => `${a.address}/${a.prefixLength}`)).toEqual(['fd00:10:0:1::/128'])
      const attrs = r.registry.acquired[0]!
      expect(attrs.publicIPv6).toBe('2001:db8::1')
      expect(attrs.backendV6Data).toEqual({ VNI: 1, VtepMAC: v6.mac })
    },
  )
})

describe('VxlanBackend peers', () => {
  it('adds a permanent neighbour, a self FDB entry and an onlink route per peer, and removes them', async () => {
    const r = await rig()
    await r.start()
    const b = peer('10.244.2.0/24', '192.0.2.2', MAC_B)
    r.events$.next([{ type: 'added', lease: b }])
    await r.next((e) => e.type === 'applied' && e.action === 'add')
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.2.0 ${MAC_B} true`],
      fdb: [`${MAC_B} 192.0.2.2 true true`],
      routes: ['10.244.2.0/24 via 10.244.2.0 onlink=true'],
    })
    // Renewal re-emits Added: idempotent.
    r.events$.next([{ type: 'added', lease: b }])
    await r.next((e) => e.type === 'applied' && e.action === 'add')
    expect((await peerState(r.host)).fdb).toHaveLength(1)

    r.events$.next([{ type: 'removed', lease: b }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove')
    expect(await peerState(r.host)).toEqual({ neigh: [], fdb: [], routes: [] })
  })

  it('replaces the entries when a peer comes back with a new MAC (no stale FDB entry)', async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_C) }])
    await r.next(
      (e) =>
        e.type === 'applied' &&
        e.lease.attrs.backendData !== undefined &&
        (e.lease.attrs.backendData as { VtepMAC: string }).VtepMAC === MAC_C,
    )
    const s = await peerState(r.host)
    expect(s.neigh).toEqual([`10.244.2.0 ${MAC_C} true`])
    expect(s.fdb).toEqual([`${MAC_C} 192.0.2.2 true true`])
  })

  it("removing one of a host's two leases keeps the VTEP's FDB entry the other needs", async () => {
    const r = await rig()
    await r.start()
    // an old lease still running out beside the same host's new one: one VTEP, two subnets
    const old = peer('10.244.2.0/24', '192.0.2.2', MAC_B)
    const current = peer('10.244.3.0/24', '192.0.2.2', MAC_B)
    r.events$.next([{ type: 'added', lease: old }])
    r.events$.next([{ type: 'added', lease: current }])
    await r.next((e) => e.type === 'applied' && e.lease === current)
    r.events$.next([{ type: 'removed', lease: old }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove')
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.3.0 ${MAC_B} true`],
      fdb: [`${MAC_B} 192.0.2.2 true true`],
      routes: ['10.244.3.0/24 via 10.244.3.0 onlink=true'],
    })
    // the VTEP moved to a new address with a third lease, which goes again: back to the old address
    const moved = peer('10.244.4.0/24', '192.0.2.4', MAC_B)
    r.events$.next([{ type: 'added', lease: moved }])
    await r.next((e) => e.type === 'applied' && e.lease === moved)
    expect((await peerState(r.host)).fdb).toEqual([`${MAC_B} 192.0.2.4 true true`])
    r.events$.next([{ type: 'removed', lease: moved }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove' && e.lease === moved)
    expect((await peerState(r.host)).fdb).toEqual([`${MAC_B} 192.0.2.2 true true`])
  })

  it('ignores non-vxlan leases and undecodable backend data', async () => {
    const r = await rig()
    await r.start()
    const hg = peer('10.244.3.0/24', '192.0.2.3', MAC_B, { backendType: 'host-gw' })
    const bad = peer('10.244.4.0/24', '192.0.2.4', MAC_B, { backendData: { VNI: 1 } })
    const first = r.next((e) => e.type === 'ignored' && e.lease === hg)
    const second = r.next((e) => e.type === 'ignored' && e.lease === bad)
    r.events$.next([
      { type: 'added', lease: hg },
      { type: 'added', lease: bad },
    ])
    const a = await first
    expect(a.type === 'ignored' && a.reason).toContain('ignoring non-vxlan')
    const b = await second
    expect(b.type === 'ignored' && b.reason).toContain('error decoding subnet lease JSON')
    expect(await peerState(r.host)).toEqual({ neigh: [], fdb: [], routes: [] })
  })

  it('uninstalls a peer whose lease is replaced by a value vxlan does not use, so the later removal leaves nothing behind', async () => {
    const r = await rig()
    await r.start()
    const a = peer('10.244.3.0/24', '192.0.2.3', MAC_B)
    const b = peer('10.244.4.0/24', '192.0.2.4', MAC_C)
    r.events$.next([
      { type: 'added', lease: a },
      { type: 'added', lease: b },
    ])
    await r.next((e) => e.type === 'applied' && e.lease === b)
    const retyped = peer('10.244.3.0/24', '192.0.2.3', MAC_B, { backendType: 'host-gw' })
    const undecodable = peer('10.244.4.0/24', '192.0.2.4', MAC_C, { backendData: { VNI: 1 } })
    r.events$.next([
      { type: 'added', lease: retyped },
      { type: 'added', lease: undecodable },
    ])
    await r
      .next((e) => e.type === 'applied' && e.action === 'remove' && e.lease === b)
      .catch((err) => {
        console.log(
          JSON.stringify(
            r.seen.map((e) => [
              e.type,
              'action' in e ? e.action : '',
              'lease' in e ? e.lease.subnet.toString() : '',
              'reason' in e ? e.reason : '',
            ]),
          ),
        )
        throw err
      })
    expect(await peerState(r.host)).toEqual({ neigh: [], fdb: [], routes: [] })
    r.events$.next([
      { type: 'removed', lease: retyped },
      { type: 'removed', lease: undecodable },
    ])
    // batches are applied in order: once a later peer is in, the removals were handled
    const later = peer('10.244.5.0/24', '192.0.2.5', MAC_B)
    r.events$.next([{ type: 'added', lease: later }])
    await r.next((e) => e.type === 'applied' && e.lease === later)
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.5.0 ${MAC_B} true`],
      fdb: [`${MAC_B} 192.0.2.5 true true`],
      routes: ['10.244.5.0/24 via 10.244.5.0 onlink=true'],
    })
  })

  it('rolls the neighbour back when the FDB entry fails, and both when the route fails', async () => {
    const r = await rig({ options: { attempts: 1 } })
    await r.start()
    r.host.failNext('replaceFdb', 'EINVAL')
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'failed')
    expect(await peerState(r.host)).toEqual({ neigh: [], fdb: [], routes: [] })

    r.host.failNext('replaceRoute', 'EINVAL')
    r.events$.next([{ type: 'added', lease: peer('10.244.3.0/24', '192.0.2.3', MAC_C) }])
    await r.next((e) => e.type === 'failed')
    expect(await peerState(r.host)).toEqual({ neigh: [], fdb: [], routes: [] })
  })

  it('retries a failing step and then succeeds', async () => {
    const r = await rig({ options: { attempts: 3 } })
    await r.start()
    r.host.failNext('replaceNeighbour', 'EBUSY')
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    expect((await peerState(r.host)).routes).toEqual(['10.244.2.0/24 via 10.244.2.0 onlink=true'])
  })

  it('uses a plain route via the PublicIP with DirectRouting when the peer is on-link', async () => {
    const r = await rig({ cfg: config({ DirectRouting: true }) })
    await r.start()
    r.events$.next([
      {
        type: 'added',
        lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B),
      },
      { type: 'added', lease: peer('10.244.3.0/24', '198.51.100.3', MAC_C) },
    ])
    await r.next((e) => e.type === 'applied' && e.lease.subnet.toString() === '10.244.3.0/24')
    const direct = await r.host.listRoutes({ linkIndex: r.ext.index })
    expect(direct.filter((x) => x.dst === '10.244.2.0/24').map((x) => x.gateway)).toEqual([
      '192.0.2.2',
    ])
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.3.0 ${MAC_C} true`],
      fdb: [`${MAC_C} 198.51.100.3 true true`],
      routes: ['10.244.3.0/24 via 10.244.3.0 onlink=true'],
    })
    r.events$.next([{ type: 'removed', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove')
    expect(
      (await r.host.listRoutes({ linkIndex: r.ext.index })).some((x) => x.dst === '10.244.2.0/24'),
    ).toBe(false)
  })

  it.skipIf(dualStackSkip !== undefined)(
    `programs IPv6 peers on flannel-v6.<VNI>${dualStackSkip ? ` (skipped: ${dualStackSkip})` : ''}`,
    async () => {
      const r = await rig({ v6: true })
      await r.start()
      r.events$.next([
        {
          type: 'added',
          lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B, {
            ipv6Subnet: 'fd00:10:0:2::/64',
            publicIPv6: '2001:db8::2',
            backendV6Data: { VNI: 1, VtepMAC: MAC_C },
          }),
        },
      ])
      await r.next((e) => e.type === 'applied')
      expect(await peerState(r.host, 'flannel-v6.1')).toEqual({
        neigh: [`fd00:10:0:2:: ${MAC_C} true`],
        fdb: [`${MAC_C} 2001:db8::2 true true`],
        routes: ['fd00:10:0:2::/64 via fd00:10:0:2:: onlink=true'],
      })
    },
  )
})

describe('VxlanBackend adoption and repair', () => {
  it('adopts matching entries and deletes owned ones no lease wants after the first batch', async () => {
    const r = await rig()
    const eth = r.ext.index
    const dev = await r.host.createVxlanLink({
      name: 'flannel.1',
      vni: 1,
      local: '192.0.2.1',
      lowerIndex: eth,
      mac: MAC_C,
    })
    await r.host.setLinkUp(dev.index, true)
    await r.host.replaceNeighbour({ linkIndex: dev.index, ip: '10.244.9.0', mac: MAC_B })
    await r.host.replaceFdb({ linkIndex: dev.index, mac: MAC_B, dst: '192.0.2.9' })
    await r.host.replaceRoute({
      family: 'inet',
      dst: '10.244.9.0/24',
      gateway: '10.244.9.0',
      linkIndex: dev.index,
      onlink: true,
    })
    await r.start()
    const b = peer('10.244.2.0/24', '192.0.2.2', MAC_B)
    r.events$.next([{ type: 'added', lease: b }])
    await r.next((e) => e.type === 'repaired' && e.what === 'stale route removed')
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.2.0 ${MAC_B} true`],
      fdb: [`${MAC_B} 192.0.2.2 true true`],
      routes: ['10.244.2.0/24 via 10.244.2.0 onlink=true'],
    })
  })

  it('restores a deleted route, neighbour and FDB entry', async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    const dev = (await r.host.getLink('flannel.1'))!.index
    for (const del of [
      () => r.host.deleteRoute({ family: 'inet', dst: '10.244.2.0/24' }),
      () => r.host.deleteNeighbour({ linkIndex: dev, ip: '10.244.2.0' }),
      () => r.host.deleteFdb({ linkIndex: dev, mac: MAC_B, dst: '192.0.2.2' }),
    ]) {
      const repaired = r.next((e) => e.type === 'repaired')
      await del()
      await repaired
      expect((await peerState(r.host)).neigh).toHaveLength(1)
      expect((await peerState(r.host)).fdb).toHaveLength(1)
      expect((await peerState(r.host)).routes).toHaveLength(1)
    }
  })

  it('recreates a deleted device with the published MAC, address and peer entries', async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    const before = (await r.host.getLink('flannel.1'))!
    const repaired = r.next((e) => e.type === 'repaired' && e.what === 'route')
    await r.host.deleteLink(before.index)
    await repaired
    const after = (await r.host.getLink('flannel.1'))!
    expect(after.index).not.toBe(before.index)
    expect(after.mac).toBe(before.mac)
    expect(after.up).toBe(true)
    expect((await r.host.listAddresses({ linkIndex: after.index })).map((a) => a.address)).toEqual([
      '10.244.1.0',
    ])
    expect((await peerState(r.host)).routes).toEqual(['10.244.2.0/24 via 10.244.2.0 onlink=true'])
  })

  it('sets the device MTU back when it is changed by hand, keeping address and peer entries', async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    const dev = (await r.host.getLink('flannel.1'))!
    const repaired = r.next((e) => e.type === 'repaired')
    await r.host.setLinkMtu(dev.index, 1000)
    expect(await repaired).toEqual({
      type: 'repaired',
      what: 'mtu',
      detail: 'flannel.1: 1000 -> 1450',
    })
    const after = (await r.host.getLink('flannel.1'))!
    expect(after).toMatchObject({ index: dev.index, mtu: 1450, up: true })
    expect((await r.host.listAddresses({ linkIndex: dev.index })).map((a) => a.address)).toEqual([
      '10.244.1.0',
    ])
    expect(await peerState(r.host)).toEqual({
      neigh: [`10.244.2.0 ${MAC_B} true`],
      fdb: [`${MAC_B} 192.0.2.2 true true`],
      routes: ['10.244.2.0/24 via 10.244.2.0 onlink=true'],
    })
  })

  it('gives a kept device the MTU it reports, as far as the underlay allows', async () => {
    const r = await rig({ cfg: config({ MTU: 1400 }) })
    const kept = await r.host.createVxlanLink({
      name: 'flannel.1',
      vni: 1,
      local: '192.0.2.1',
      lowerIndex: r.ext.index,
      mac: MAC_C,
    })
    expect(kept.mtu).toBe(1450)
    await r.start()
    expect((await r.host.getLink('flannel.1'))!).toMatchObject({ index: kept.index, mtu: 1350 })

    // An MTU option above the underlay's: FLANNEL_MTU says 8950 (as flanneld), the device
    // has what the kernel allows, and a repair aims there, not at 8950.
    const big = await rig({ cfg: config({ MTU: 9000 }) })
    await big.start()
    const dev = (await big.host.getLink('flannel.1'))!
    expect(dev.mtu).toBe(1450)
    big.events$.next([])
    const repaired = big.next((e) => e.type === 'repaired')
    await big.host.setLinkMtu(dev.index, 1000)
    expect(await repaired).toEqual({
      type: 'repaired',
      what: 'mtu',
      detail: 'flannel.1: 1000 -> 1450',
    })
    expect(big.seen.filter((e) => e.type === 'warning')).toEqual([])
  })

  it.skipIf(dualStackSkip !== undefined)(
    `keeps flannel-v6.<VNI> at the underlay MTU less 70 and repairs it there${dualStackSkip ? ` (skipped: ${dualStackSkip})` : ''}`,
    async () => {
      const r = await rig({ v6: true })
      await r.start()
      r.events$.next([])
      const v6 = (await r.host.getLink('flannel-v6.1'))!
      expect(v6.mtu).toBe(1430)
      expect((await r.host.getLink('flannel.1'))!.mtu).toBe(1450)
      const repaired = r.next((e) => e.type === 'repaired')
      await r.host.setLinkMtu(v6.index, 1300)
      expect(await repaired).toEqual({
        type: 'repaired',
        what: 'mtu',
        detail: 'flannel-v6.1: 1300 -> 1430',
      })
      expect((await r.host.getLink('flannel-v6.1'))!.mtu).toBe(1430)
      expect(r.seen.filter((e) => e.type === 'warning')).toEqual([])
    },
  )

  it('does a full check after a notification overflow and stops cleanly', async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.2.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied')
    expect(r.host.subscriberCount).toBeGreaterThan(0)
    r.stop()
    expect(r.host.subscriberCount).toBe(0)
  })

  it('switches tx checksum offload off when asked, and reports a failing ethtool as a warning', async () => {
    const calls: string[] = []
    const r = await rig({
      cfg: config({ TxChecksumOffload: false }),
      options: {
        commandRunner: async (cmd, args) => {
          calls.push([cmd, ...args].join(' '))
          throw new Error('ethtool: not found')
        },
      },
    })
    const warning = r.next((e) => e.type === 'warning')
    await r.start()
    expect(calls).toEqual(['ethtool -K flannel.1 tx off'])
    const w = await warning
    expect(w.type === 'warning' && w.message).toContain('tx checksum offload')

    const quiet: string[] = []
    const r2 = await rig({ options: { commandRunner: async (cmd) => (quiet.push(cmd), '') } })
    await r2.start()
    expect(quiet).toEqual([])
  })

  it('createBackend builds a vxlan backend', () => {
    const host = new MemoryHostNetwork()
    void host
    const b = createBackend({
      registry: new FixedLeaseRegistry(config()),
      extIface: { name: 'eth0', index: 1, mtu: 1500 },
    })
    expect(b.type).toBe('vxlan')
  })
})

/** Every route, neighbour and FDB entry of the host, as sorted text. */
async function hostState(host: MemoryHostNetwork) {
  return {
    routes: (await host.listRoutes())
      .map((r) => `${r.dst} via ${r.gateway ?? '-'} dev ${r.linkIndex} proto ${r.protocol}`)
      .sort(),
    neigh: (await host.listNeighbours()).map((n) => `${n.ip} ${n.mac} dev ${n.linkIndex}`).sort(),
    fdb: (await host.listFdb()).map((e) => `${e.mac} ${e.dst} dev ${e.linkIndex}`).sort(),
  }
}

describe('VxlanBackend and leases it must not act on (issue 12)', () => {
  const MAC_X = '02:00:00:00:00:66'

  /** Sends `batches`, then adds and removes a sentinel peer: once that is done, everything before it was applied. */
  async function sendAndSettle(r: Rig, batches: LeaseEvent[][]): Promise<void> {
    for (const b of batches) r.events$.next(b)
    const sentinel = peer('10.244.250.0/24', '192.0.2.250', '02:00:00:00:00:fa')
    r.events$.next([{ type: 'added', lease: sentinel }])
    await r.next((e) => e.type === 'applied' && e.action === 'add' && e.lease === sentinel)
    r.events$.next([{ type: 'removed', lease: sentinel }])
    await r.next((e) => e.type === 'applied' && e.action === 'remove' && e.lease === sentinel)
  }

  it("a key with host bits set for a peer's subnet, or a second key for it, never touches the peer's entries", async () => {
    const r = await rig()
    await r.start()
    r.events$.next([{ type: 'added', lease: peer('10.244.85.0/24', '192.0.2.2', MAC_B) }])
    await r.next((e) => e.type === 'applied' && e.action === 'add')
    const before = await hostState(r.host)
    const hostile = [
      peer(new Ip4Net(parseIp4('10.244.85.5'), 24), '192.0.2.66', MAC_X), // the issue's key
      peer('10.244.85.0/24', '192.0.2.66', MAC_X, { ipv6Subnet: 'fd00:10:0:85::/64' }),
      peer('10.244.85.128/25', '192.0.2.66', MAC_X),
      peer('10.244.0.0/16', '192.0.2.66', MAC_X),
    ]
    await sendAndSettle(r, [
      hostile.map((lease): LeaseEvent => ({ type: 'added', lease })),
      hostile.map((lease): LeaseEvent => ({ type: 'removed', lease })),
    ])
    expect(await hostState(r.host)).toEqual(before)
    expect((await peerState(r.host)).routes).toEqual(['10.244.85.0/24 via 10.244.85.0 onlink=true'])
  })

  it('a key inside the own subnet never replaces the pod route via cni0, nor removes it', async () => {
    const r = await rig()
    await r.start()
    const cni0 = r.host.addLink({ name: 'cni0', kind: 'bridge' })
    await r.host.addAddress({
      linkIndex: cni0.index,
      family: 'inet',
      address: '10.244.1.1',
      prefixLength: 24,
    })
    r.events$.next([])
    const before = await hostState(r.host)
    expect(before.routes).toContain(`10.244.1.0/24 via - dev ${cni0.index} proto 2`)
    const hostile = [
      peer(new Ip4Net(parseIp4('10.244.1.5'), 24), '192.0.2.66', MAC_X), // the issue's key
      peer('10.244.1.128/25', '192.0.2.66', MAC_X),
      peer('10.244.1.0/24', '192.0.2.66', MAC_X, { ipv6Subnet: 'fd00:10:0:1::/64' }),
    ]
    await sendAndSettle(r, [
      hostile.map((lease): LeaseEvent => ({ type: 'added', lease })),
      hostile.map((lease): LeaseEvent => ({ type: 'removed', lease })),
    ])
    expect(await hostState(r.host)).toEqual(before)
    const ignored = r.seen
      .filter((e) => e.type === 'ignored')
      .map((e) => e.type === 'ignored' && e.reason)
    expect(ignored).toContain(
      'not a lease: 10.244.1.5/24 has host bits set (the subnet is 10.244.1.0/24)',
    )
  })
})
