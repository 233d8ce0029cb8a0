import { describe, expect, it } from 'vitest'
import { firstValueFrom, take, toArray } from 'rxjs'
import {
  FLANNEL_ROUTE_PROTOCOL,
  MemoryHostNetwork,
  isNetlinkError,
  type HostNetworkNotification,
} from '../src/index.js'
import { syncBlackholeRoutes } from '../src/backend/index.js'
import { NetlinkError } from '../src/errors.js'

async function setup() {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
  const eth = (await host.getLink('eth0'))!
  await host.addAddress({
    linkIndex: eth.index,
    family: 'inet',
    address: '192.0.2.1',
    prefixLength: 24,
  })
  return { host, eth }
}

describe('MemoryHostNetwork', () => {
  it('creates vxlan links with kernel defaults and refuses duplicates (name, VNI+port) with EEXIST', async () => {
    const { host, eth } = await setup()
    const link = await host.createVxlanLink({
      name: 'flannel.1',
      vni: 1,
      lowerIndex: eth.index,
      local: '192.0.2.1',
    })
    expect(link.vxlan).toEqual({
      vni: 1,
      local: '192.0.2.1',
      lowerIndex: eth.index,
      port: 8472,
      learning: false,
      gbp: false,
    })
    expect(link.up).toBe(false)
    await expect(host.createVxlanLink({ name: 'flannel.1', vni: 2 })).rejects.toSatisfy((e) =>
      isNetlinkError(e, 'EEXIST'),
    )
    await expect(host.createVxlanLink({ name: 'other', vni: 1 })).rejects.toSatisfy((e) =>
      isNetlinkError(e, 'EEXIST'),
    )
    await expect(host.createVxlanLink({ name: 'a-name-that-is-too-long', vni: 3 })).rejects.toThrow(
      'invalid link name',
    )
    await expect(host.createVxlanLink({ name: 'x', vni: 1 << 24 })).rejects.toThrow('invalid vni')
  })

  // The same expectations as the kernel's in netlink.integration.test.ts.
  it('caps a vxlan MTU at the lower MTU less 50 (IPv4 underlay) or 70 (IPv6) and refuses more with EINVAL', async () => {
    const { host, eth } = await setup()
    const v4 = await host.createVxlanLink({
      name: 'flmtu4',
      vni: 51,
      local: '192.0.2.1',
      lowerIndex: eth.index,
      mtu: 1500,
    })
    const v6 = await host.createVxlanLink({
      name: 'flmtu6',
      vni: 51,
      local: '2001:db8::1',
      lowerIndex: eth.index,
    })
    expect((await host.getLink(v4.index))?.mtu).toBe(1450)
    expect((await host.getLink(v6.index))?.mtu).toBe(1430)
    await expect(host.setLinkMtu(v6.index, 1450)).rejects.toSatisfy((e) =>
      isNetlinkError(e, 'EINVAL'),
    )
    await host.setLinkMtu(v4.index, 1000)
    expect((await host.getLink(v4.index))?.mtu).toBe(1000)
  })

  it('deleting a link removes its addresses, neighbours, FDB entries and routes', async () => {
    const { host, eth } = await setup()
    const vx = await host.createVxlanLink({ name: 'flannel.1', vni: 1 })
    await host.setLinkUp(vx.index, true)
    await host.addAddress({
      linkIndex: vx.index,
      family: 'inet',
      address: '10.244.1.0',
      prefixLength: 32,
    })
    await host.replaceNeighbour({ linkIndex: vx.index, ip: '10.244.2.0', mac: '0e:00:00:00:00:02' })
    await host.appendFdb({ linkIndex: vx.index, mac: '0e:00:00:00:00:02', dst: '192.0.2.2' })
    await host.replaceRoute({
      family: 'inet',
      dst: '10.244.2.0/24',
      gateway: '10.244.2.0',
      linkIndex: vx.index,
      onlink: true,
    })
    await host.deleteLink(vx.index)
    expect(await host.listAddresses({ linkIndex: vx.index })).toEqual([])
    expect(await host.listNeighbours()).toEqual([])
    expect(await host.listFdb()).toEqual([])
    expect((await host.listRoutes()).map((r) => r.dst)).toEqual(['192.0.2.0/24'])
    await expect(host.deleteLink(vx.index)).rejects.toSatisfy((e) => isNetlinkError(e, 'ENODEV'))
    expect(eth.index).not.toBe(vx.index)
  })

  it('addresses: EEXIST, EADDRNOTAVAIL and a connected route for non-host prefixes', async () => {
    const { host, eth } = await setup()
    const a = {
      linkIndex: eth.index,
      family: 'inet' as const,
      address: '192.0.2.1',
      prefixLength: 24,
    }
    await expect(host.addAddress(a)).rejects.toSatisfy((e) => isNetlinkError(e, 'EEXIST'))
    expect(await host.listRoutes()).toEqual([
      expect.objectContaining({ dst: '192.0.2.0/24', linkIndex: eth.index, protocol: 2 }),
    ])
    await host.deleteAddress(a)
    expect(await host.listRoutes()).toEqual([])
    await expect(host.deleteAddress(a)).rejects.toSatisfy((e) => isNetlinkError(e, 'EADDRNOTAVAIL'))
  })

  it('neighbours and FDB: replace, append without duplicates, delete with ENOENT', async () => {
    const { host, eth } = await setup()
    await host.replaceNeighbour({ linkIndex: eth.index, ip: '192.0.2.9', mac: '0E:0:0:0:0:9' })
    await host.replaceNeighbour({ linkIndex: eth.index, ip: '192.0.2.9', mac: '0e:00:00:00:00:0a' })
    expect(await host.listNeighbours()).toEqual([
      {
        linkIndex: eth.index,
        family: 'inet',
        ip: '192.0.2.9',
        mac: '0e:00:00:00:00:0a',
        permanent: true,
      },
    ])
    await host.appendFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a', dst: '192.0.2.9' })
    await host.appendFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a', dst: '192.0.2.9' })
    await host.replaceFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a', dst: '192.0.2.10' })
    expect((await host.listFdb()).map((e) => e.dst)).toEqual(['192.0.2.10'])
    await host.deleteFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a' })
    await expect(
      host.deleteFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a' }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENOENT'))
    await host.deleteNeighbour({ linkIndex: eth.index, ip: '192.0.2.9' })
    await expect(host.deleteNeighbour({ linkIndex: eth.index, ip: '192.0.2.9' })).rejects.toSatisfy(
      (e) => isNetlinkError(e, 'ENOENT'),
    )
    await expect(
      host.replaceNeighbour({ linkIndex: 99, ip: '192.0.2.9', mac: '0e:00:00:00:00:0a' }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENODEV'))
  })

  it('routes: replace in place, EEXIST on add, ENETUNREACH off-link unless onlink, ESRCH on delete, filter by protocol', async () => {
    const { host, eth } = await setup()
    const r = {
      family: 'inet' as const,
      dst: '10.244.2.7/24',
      gateway: '192.0.2.2',
      linkIndex: eth.index,
      protocol: FLANNEL_ROUTE_PROTOCOL,
    }
    await host.replaceRoute(r)
    await host.replaceRoute({ ...r, gateway: '192.0.2.3' })
    expect(await host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([
      expect.objectContaining({ dst: '10.244.2.0/24', gateway: '192.0.2.3' }),
    ])
    await expect(host.addRoute(r)).rejects.toSatisfy((e) => isNetlinkError(e, 'EEXIST'))
    await expect(
      host.replaceRoute({ ...r, dst: '10.244.3.0/24', gateway: '198.51.100.1' }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENETUNREACH'))
    await host.replaceRoute({ ...r, dst: '10.244.3.0/24', gateway: '198.51.100.1', onlink: true })
    await host.deleteRoute({ family: 'inet', dst: '10.244.2.0/24', gateway: '192.0.2.3' })
    await expect(host.deleteRoute({ family: 'inet', dst: '10.244.2.0/24' })).rejects.toSatisfy(
      (e) => isNetlinkError(e, 'ESRCH'),
    )
    await host.setLinkUp(eth.index, false)
    expect(await host.listRoutes()).toEqual([])
    await expect(host.replaceRoute(r)).rejects.toSatisfy((e) => isNetlinkError(e, 'ENETDOWN'))
    await host.setLinkUp(eth.index, true)
    expect((await host.listRoutes()).map((x) => x.dst)).toEqual(['192.0.2.0/24'])
  })

  it('blackhole routes: listed apart from unicast, no gateway or device, same slot as unicast, not notified', async () => {
    const { host, eth } = await setup()
    const seen: HostNetworkNotification[] = []
    const sub = host.notifications(['route']).subscribe((n) => seen.push(n))
    await host.addRoute({ family: 'inet', type: 'blackhole', dst: '10.5.1.0/24' })
    expect(await host.listRoutes({ type: 'blackhole' })).toEqual([
      expect.objectContaining({ type: 'blackhole', dst: '10.5.1.0/24', protocol: 3 }),
    ])
    expect((await host.listRoutes()).map((r) => r.dst)).not.toContain('10.5.1.0/24')
    await expect(
      host.addRoute({ family: 'inet', dst: '10.5.1.0/24', linkIndex: eth.index }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'EEXIST'))
    await expect(
      host.addRoute({
        family: 'inet',
        type: 'blackhole',
        dst: '10.5.2.0/24',
        gateway: '192.0.2.9',
      }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'EINVAL'))
    await expect(
      host.deleteRoute({ family: 'inet', dst: '10.5.1.0/24', type: 'unicast' }),
    ).rejects.toSatisfy((e) => isNetlinkError(e, 'ESRCH'))
    await host.deleteRoute({ family: 'inet', dst: '10.5.1.0/24' })
    sub.unsubscribe()
    expect(seen).toEqual([])
  })

  it('syncBlackholeRoutes: adds the own subnets, removes only its own stale ones, yields to a unicast route', async () => {
    const { host, eth } = await setup()
    const owned = { type: 'blackhole', protocol: FLANNEL_ROUTE_PROTOCOL } as const
    await host.addRoute({ family: 'inet', dst: '10.5.7.0/24', ...owned })
    await host.addRoute({ family: 'inet', type: 'blackhole', dst: '10.5.8.0/24' })
    await host.addRoute({ family: 'inet', dst: '10.5.10.0/24', linkIndex: eth.index })
    const result = await syncBlackholeRoutes(host, ['10.5.9.0/24', '10.5.10.0/24', 'fd00:9::/64'])
    expect(result).toEqual({
      added: ['10.5.9.0/24', 'fd00:9::/64'],
      removed: ['10.5.7.0/24'],
      yielded: ['10.5.10.0/24'],
      failed: [],
    })
    expect((await host.listRoutes({ type: 'blackhole' })).map((r) => r.dst).sort()).toEqual([
      '10.5.8.0/24',
      '10.5.9.0/24',
      'fd00:9::/64',
    ])
    // a bridge address takes 10.5.9.0/24 later: its connected route would be shadowed
    await host.addAddress({
      linkIndex: eth.index,
      family: 'inet',
      address: '10.5.9.1',
      prefixLength: 24,
    })
    expect(await syncBlackholeRoutes(host, ['10.5.9.0/24'])).toEqual({
      added: [],
      removed: ['10.5.9.0/24', 'fd00:9::/64'],
      yielded: ['10.5.9.0/24'],
      failed: [],
    })
    expect((await host.listRoutes({ type: 'blackhole' })).map((r) => r.dst)).toEqual([
      '10.5.8.0/24',
    ])
    await expect(syncBlackholeRoutes(host, ['10.5.9.0/33'])).rejects.toThrow(/10\.5\.9\.0\/33/)
  })

  it('syncBlackholeRoutes reports a failed add and goes on with the next subnet', async () => {
    const { host } = await setup()
    host.failNext('addRoute', 'EPERM')
    const result = await syncBlackholeRoutes(host, ['10.5.11.0/24', '10.5.12.0/24'])
    expect(result.added).toEqual(['10.5.12.0/24'])
    expect(result.failed.map((f) => [f.subnet, isNetlinkError(f.error, 'EPERM')])).toEqual([
      ['10.5.11.0/24', true],
    ])
    // the next check adds it
    expect((await syncBlackholeRoutes(host, ['10.5.11.0/24', '10.5.12.0/24'])).added).toEqual([
      '10.5.11.0/24',
    ])
  })

  it('notifies route, neighbour, fdb and link changes to subscribers of those kinds', async () => {
    const { host, eth } = await setup()
    const events = firstValueFrom(host.notifications(['route', 'fdb']).pipe(take(3), toArray()))
    await host.replaceNeighbour({ linkIndex: eth.index, ip: '192.0.2.9', mac: '0e:00:00:00:00:0a' })
    await host.replaceRoute({
      family: 'inet',
      dst: '10.244.2.0/24',
      gateway: '192.0.2.2',
      linkIndex: eth.index,
    })
    await host.appendFdb({ linkIndex: eth.index, mac: '0e:00:00:00:00:0a', dst: '192.0.2.9' })
    await host.deleteRoute({ family: 'inet', dst: '10.244.2.0/24' })
    const got = (await events).map(
      (n: HostNetworkNotification) => `${n.kind}:${'action' in n ? n.action : ''}`,
    )
    expect(got).toEqual(['route:new', 'fdb:new', 'route:del'])
    expect(host.subscriberCount).toBe(0)
  })

  it('injects faults before changing anything', async () => {
    const { host, eth } = await setup()
    host.failNext('replaceRoute', 'EPERM')
    const error = await host
      .replaceRoute({
        family: 'inet',
        dst: '10.244.2.0/24',
        gateway: '192.0.2.2',
        linkIndex: eth.index,
      })
      .catch((e: unknown) => e)
    expect(error).toBeInstanceOf(NetlinkError)
    expect(error).toMatchObject({ errno: 'EPERM', errnoNumber: 1, code: 'NETLINK_ERROR' })
    expect((await host.listRoutes()).map((r) => r.dst)).toEqual(['192.0.2.0/24'])
  })
})

describe('NetlinkError mapping', () => {
  it('reads the errno name from the netlink package message', async () => {
    const { toNetlinkError } = await import('../src/errors.js')
    const e = toNetlinkError('replaceRoute 10.244.2.0/24', new Error('Request rejected: EEXIST'))
    expect(e).toMatchObject({
      errno: 'EEXIST',
      errnoNumber: 17,
      operation: 'replaceRoute 10.244.2.0/24',
      retryable: false,
    })
    expect(e.message).toBe('replaceRoute 10.244.2.0/24: EEXIST')
    expect(toNetlinkError('x', new Error('boom'))).toMatchObject({
      errno: 'EUNKNOWN',
      message: 'x: EUNKNOWN (boom)',
    })
    expect(
      toNetlinkError(
        'x',
        Object.assign(new Error('recvmsg: No buffer space'), { code: 'ENOBUFS' }),
      ),
    ).toMatchObject({
      errno: 'ENOBUFS',
      retryable: true,
    })
  })
})
