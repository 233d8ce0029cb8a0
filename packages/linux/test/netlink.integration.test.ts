import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { readdir, readlink } from 'node:fs/promises'
import { firstValueFrom, filter, take, toArray, timeout } from 'rxjs'
import {
  FLANNEL_ROUTE_PROTOCOL,
  isNetlinkError,
  type HostNetworkNotification,
} from '../src/index.js'
import { syncBlackholeRoutes } from '../src/backend/index.js'
import {
  Namespaces,
  RemoteHostNetwork,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
} from './helpers/netns.js'

const unavailable = await kernelTestsUnavailable()
if (unavailable) console.warn(`NetlinkHostNetwork kernel tests skipped: ${unavailable}`)

describe.skipIf(unavailable !== undefined)(
  `NetlinkHostNetwork in a network namespace${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const ns = `${prefix}-nl`
    let host: RemoteHostNetwork
    let ethIndex = 0

    beforeAll(async () => {
      await namespaces.create(ns)
      // An underlay device: a veth pair inside the namespace.
      await inNs(ns, 'ip', [
        'link',
        'add',
        `${prefix}a`,
        'type',
        'veth',
        'peer',
        'name',
        `${prefix}b`,
      ])
      await inNs(ns, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', `${prefix}a`])
      await inNs(ns, 'ip', ['link', 'set', `${prefix}a`, 'up'])
      await inNs(ns, 'ip', ['link', 'set', `${prefix}b`, 'up'])
      host = new RemoteHostNetwork(ns)
      await host.start()
      ethIndex = (await host.getLink(`${prefix}a`))!.index
    })

    afterAll(async () => {
      await host?.close()
      await namespaces.removeAll()
    })

    it('lists links with index, MTU, MAC and up state', async () => {
      const links = await host.listLinks()
      const eth = links.find((l) => l.name === `${prefix}a`)
      expect(eth).toMatchObject({ index: ethIndex, mtu: 1500, up: true, kind: 'veth' })
      expect(eth!.mac).toMatch(/^([0-9a-f]{2}:){5}[0-9a-f]{2}$/)
      expect(links.find((l) => l.name === 'lo')).toMatchObject({ up: true, mtu: 65536 })
    })

    it('creates a vxlan link with id, local, dev, port, nolearning and gbp; sets MTU and up; deletes it', async () => {
      const link = await host.createVxlanLink({
        name: 'flannel.42',
        vni: 42,
        local: '192.0.2.1',
        lowerIndex: ethIndex,
        port: 4789,
        learning: false,
        gbp: true,
        mac: '0e:00:00:00:00:2a',
      })
      expect(link.vxlan).toEqual({
        vni: 42,
        local: '192.0.2.1',
        lowerIndex: ethIndex,
        port: 4789,
        learning: false,
        gbp: true,
      })
      expect(link.mac).toBe('0e:00:00:00:00:2a')
      await host.setLinkMtu(link.index, 1450)
      await host.setLinkUp(link.index, true)
      const details = await inNs(ns, 'ip', ['-d', 'link', 'show', 'flannel.42'])
      expect(details).toContain('vxlan id 42 local 192.0.2.1 dev')
      expect(details).toContain('dstport 4789')
      expect(details).toContain('nolearning')
      expect(details).toContain('gbp')
      expect(details).toContain('mtu 1450')
      expect(details).toMatch(/<[^>]*\bUP\b/)

      await expect(host.createVxlanLink({ name: 'flannel.42', vni: 43 })).rejects.toSatisfy((e) =>
        isNetlinkError(e, 'EEXIST'),
      )
      await host.deleteLink(link.index)
      expect(await host.getLink('flannel.42')).toBeUndefined()
      await expect(host.deleteLink(link.index)).rejects.toSatisfy((e) =>
        isNetlinkError(e, 'ENODEV'),
      )
    })

    it('caps a vxlan MTU at the lower MTU less 50 (IPv4 underlay) or 70 (IPv6) and refuses more with EINVAL', async () => {
      const v4 = await host.createVxlanLink({
        name: 'flmtu4',
        vni: 51,
        local: '192.0.2.1',
        lowerIndex: ethIndex,
        mtu: 1500,
      })
      const v6 = await host.createVxlanLink({
        name: 'flmtu6',
        vni: 51,
        local: '2001:db8::1',
        lowerIndex: ethIndex,
      })
      try {
        expect((await host.getLink(v4.index))?.mtu).toBe(1450)
        expect((await host.getLink(v6.index))?.mtu).toBe(1430)
        await expect(host.setLinkMtu(v6.index, 1450)).rejects.toSatisfy((e) =>
          isNetlinkError(e, 'EINVAL'),
        )
        await host.setLinkMtu(v4.index, 1000)
        expect((await host.getLink(v4.index))?.mtu).toBe(1000)
      } finally {
        await host.deleteLink(v4.index)
        await host.deleteLink(v6.index)
      }
    })

    it('leaves the kernel default port 8472 when no port is given, and learning when asked', async () => {
      const link = await host.createVxlanLink({
        name: 'flannel.7',
        vni: 7,
        lowerIndex: ethIndex,
        learning: true,
      })
      expect(link.vxlan).toMatchObject({ vni: 7, port: 8472, learning: true, gbp: false })
      await host.deleteLink(link.index)
    })

    it('adds, lists and deletes IPv4 and IPv6 addresses with kernel errors', async () => {
      await host.addAddress({
        linkIndex: ethIndex,
        family: 'inet',
        address: '10.244.1.0',
        prefixLength: 32,
      })
      await host.addAddress({
        linkIndex: ethIndex,
        family: 'inet6',
        address: 'fd00:1::1',
        prefixLength: 64,
      })
      const addrs = await host.listAddresses({ linkIndex: ethIndex })
      expect(addrs).toEqual(
        expect.arrayContaining([
          { linkIndex: ethIndex, family: 'inet', address: '10.244.1.0', prefixLength: 32 },
          { linkIndex: ethIndex, family: 'inet6', address: 'fd00:1::1', prefixLength: 64 },
        ]),
      )
      await expect(
        host.addAddress({
          linkIndex: ethIndex,
          family: 'inet',
          address: '10.244.1.0',
          prefixLength: 32,
        }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'EEXIST'))
      await host.deleteAddress({
        linkIndex: ethIndex,
        family: 'inet',
        address: '10.244.1.0',
        prefixLength: 32,
      })
      await host.deleteAddress({
        linkIndex: ethIndex,
        family: 'inet6',
        address: 'fd00:1::1',
        prefixLength: 64,
      })
      await expect(
        host.deleteAddress({
          linkIndex: ethIndex,
          family: 'inet',
          address: '10.244.1.0',
          prefixLength: 32,
        }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'EADDRNOTAVAIL'))
      expect(
        (await host.listAddresses({ linkIndex: ethIndex, family: 'inet' })).map((a) => a.address),
      ).toEqual(['192.0.2.1'])
    })

    it('replaces, lists and deletes permanent neighbours and self FDB entries', async () => {
      const vx = await host.createVxlanLink({
        name: 'flannel.9',
        vni: 9,
        lowerIndex: ethIndex,
        local: '192.0.2.1',
      })
      await host.setLinkUp(vx.index, true)
      await host.replaceNeighbour({
        linkIndex: vx.index,
        ip: '10.244.2.0',
        mac: '0e:00:00:00:02:00',
      })
      await host.replaceNeighbour({
        linkIndex: vx.index,
        ip: '10.244.2.0',
        mac: '0e:00:00:00:02:01',
      })
      expect(await host.listNeighbours({ linkIndex: vx.index, family: 'inet' })).toEqual([
        {
          linkIndex: vx.index,
          family: 'inet',
          ip: '10.244.2.0',
          mac: '0e:00:00:00:02:01',
          permanent: true,
        },
      ])
      expect(await inNs(ns, 'ip', ['neigh', 'show', 'dev', 'flannel.9'])).toContain(
        '10.244.2.0 lladdr 0e:00:00:00:02:01 PERMANENT',
      )

      await host.appendFdb({ linkIndex: vx.index, mac: '0e:00:00:00:02:01', dst: '192.0.2.2' })
      await host.appendFdb({ linkIndex: vx.index, mac: '0e:00:00:00:02:01', dst: '192.0.2.2' })
      const fdb = await host.listFdb({ linkIndex: vx.index })
      expect(fdb.filter((e) => e.mac === '0e:00:00:00:02:01')).toEqual([
        {
          linkIndex: vx.index,
          mac: '0e:00:00:00:02:01',
          dst: '192.0.2.2',
          self: true,
          permanent: true,
        },
      ])
      expect(await inNs(ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.9'])).toContain(
        '0e:00:00:00:02:01 dst 192.0.2.2 self permanent',
      )
      await host.replaceFdb({ linkIndex: vx.index, mac: '0e:00:00:00:02:01', dst: '192.0.2.3' })
      expect(
        (await host.listFdb({ linkIndex: vx.index }))
          .filter((e) => e.mac === '0e:00:00:00:02:01')
          .map((e) => e.dst),
      ).toEqual(['192.0.2.3'])

      await host.deleteFdb({ linkIndex: vx.index, mac: '0e:00:00:00:02:01', dst: '192.0.2.3' })
      await expect(
        host.deleteFdb({ linkIndex: vx.index, mac: '0e:00:00:00:02:01', dst: '192.0.2.3' }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENOENT'))
      await host.deleteNeighbour({ linkIndex: vx.index, ip: '10.244.2.0' })
      await expect(
        host.deleteNeighbour({ linkIndex: vx.index, ip: '10.244.2.0' }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENOENT'))
      await host.deleteLink(vx.index)
    })

    it('adds, replaces, lists by protocol and deletes routes; onlink; ENETUNREACH without it', async () => {
      await host.replaceRoute({
        family: 'inet',
        dst: '10.244.5.0/24',
        gateway: '192.0.2.5',
        linkIndex: ethIndex,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      await host.replaceRoute({
        family: 'inet',
        dst: '10.244.5.0/24',
        gateway: '192.0.2.6',
        linkIndex: ethIndex,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      expect(await host.listRoutes({ family: 'inet', protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([
        expect.objectContaining({
          family: 'inet',
          dst: '10.244.5.0/24',
          gateway: '192.0.2.6',
          linkIndex: ethIndex,
          protocol: 70,
          table: 254,
        }),
      ])
      await expect(
        host.addRoute({
          family: 'inet',
          dst: '10.244.5.0/24',
          gateway: '192.0.2.7',
          linkIndex: ethIndex,
        }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'EEXIST'))
      await expect(
        host.replaceRoute({
          family: 'inet',
          dst: '10.244.6.0/24',
          gateway: '10.9.9.9',
          linkIndex: ethIndex,
        }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'ENETUNREACH'))
      await host.replaceRoute({
        family: 'inet',
        dst: '10.244.6.0/24',
        gateway: '10.9.9.9',
        linkIndex: ethIndex,
        onlink: true,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      expect(await inNs(ns, 'ip', ['route', 'show', '10.244.6.0/24'])).toContain('via 10.9.9.9 dev')
      expect(
        (await host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).find(
          (r) => r.dst === '10.244.6.0/24',
        ),
      ).toMatchObject({
        onlink: true,
        gateway: '10.9.9.9',
      })
      await host.addRoute({
        family: 'inet6',
        dst: 'fd00:5::/64',
        gateway: 'fe80::1',
        linkIndex: ethIndex,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      expect(
        (await host.listRoutes({ family: 'inet6', protocol: FLANNEL_ROUTE_PROTOCOL })).map((r) => [
          r.dst,
          r.gateway,
        ]),
      ).toEqual([['fd00:5::/64', 'fe80::1']])

      await host.deleteRoute({
        family: 'inet',
        dst: '10.244.5.0/24',
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      await host.deleteRoute({ family: 'inet', dst: '10.244.6.0/24' })
      await host.deleteRoute({ family: 'inet6', dst: 'fd00:5::/64' })
      await expect(host.deleteRoute({ family: 'inet', dst: '10.244.5.0/24' })).rejects.toSatisfy(
        (e) => isNetlinkError(e, 'ESRCH'),
      )
      expect(await host.listRoutes({ protocol: FLANNEL_ROUTE_PROTOCOL })).toEqual([])
    })

    it('streams route, neighbour and link notifications and stops on unsubscribe', async () => {
      const seen = firstValueFrom(
        host.notifications(['route', 'link']).pipe(
          filter(
            (n: HostNetworkNotification) =>
              (n.kind === 'route' && n.route.dst === '10.244.8.0/24') ||
              (n.kind === 'link' && n.link.name === 'flannel.8'),
          ),
          take(3),
          toArray(),
          timeout(5000),
        ),
      )
      await host.settle()
      await host.replaceRoute({
        family: 'inet',
        dst: '10.244.8.0/24',
        gateway: '192.0.2.8',
        linkIndex: ethIndex,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      await inNs(ns, 'ip', ['route', 'del', '10.244.8.0/24'])
      const vx = await host.createVxlanLink({ name: 'flannel.8', vni: 8 })
      const events = await seen
      expect(events.map((e) => `${e.kind}:${'action' in e ? e.action : ''}`)).toEqual([
        'route:new',
        'route:del',
        'link:new',
      ])
      expect(events[0]).toMatchObject({ route: { gateway: '192.0.2.8', protocol: 70 } })
      await host.deleteLink(vx.index)
    })

    it('opens one socket per notification subscription and closes it on unsubscribe', async () => {
      // The helper's descriptors come and go meanwhile (requests open and close
      // their own): one that vanishes between the listing and its readlink is
      // simply not counted.
      const sockets = async (): Promise<number> => {
        const dir = `/proc/${host.pid}/fd`
        const targets = await Promise.all(
          (await readdir(dir)).map((fd) => readlink(`${dir}/${fd}`).catch(() => '')),
        )
        return targets.filter((t) => t.startsWith('socket:')).length
      }
      const waitFor = async (want: number): Promise<number> => {
        let n = await sockets()
        for (let i = 0; i < 100 && n !== want; i++) {
          await new Promise((r) => setTimeout(r, 10))
          n = await sockets()
        }
        return n
      }
      const before = await sockets()
      const sub = host.notifications(['route']).subscribe()
      await host.settle()
      expect(await waitFor(before + 1)).toBe(before + 1)
      sub.unsubscribe()
      await host.settle() // the driver has handled the unsubscribe (requests are served in order)
      expect(await waitFor(before)).toBe(before)
    })

    it('writes device routes with scope link by default and universe on request', async () => {
      await host.replaceRoute({
        family: 'inet',
        dst: '10.250.0.0/16',
        linkIndex: ethIndex,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      await host.replaceRoute({
        family: 'inet',
        dst: '10.251.0.0/16',
        linkIndex: ethIndex,
        scope: 'universe',
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      expect(await inNs(ns, 'ip', ['route', 'show', '10.250.0.0/16'])).toContain('scope link')
      expect(await inNs(ns, 'ip', ['route', 'show', '10.251.0.0/16'])).not.toContain('scope')
      const routes = await host.listRoutes({ family: 'inet', protocol: FLANNEL_ROUTE_PROTOCOL })
      expect(routes.map((r) => [r.dst, r.scope, r.gateway])).toEqual([
        ['10.250.0.0/16', 'link', undefined],
        ['10.251.0.0/16', 'universe', undefined],
      ])
      await host.deleteRoute({ family: 'inet', dst: '10.250.0.0/16' })
      await host.deleteRoute({ family: 'inet', dst: '10.251.0.0/16' })
    })
    it('adds, lists and deletes blackhole routes apart from unicast ones', async () => {
      await host.addRoute({
        family: 'inet',
        type: 'blackhole',
        dst: '10.244.7.0/24',
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      expect(await inNs(ns, 'ip', ['route', 'show', 'type', 'blackhole'])).toContain(
        'blackhole 10.244.7.0/24 proto 70',
      )
      expect(await host.listRoutes({ type: 'blackhole' })).toEqual([
        expect.objectContaining({
          family: 'inet',
          type: 'blackhole',
          dst: '10.244.7.0/24',
          protocol: 70,
          scope: 'universe',
        }),
      ])
      const [route] = await host.listRoutes({ type: 'blackhole' })
      expect([route!.gateway, route!.linkIndex]).toEqual([undefined, undefined])
      // the unicast listing (every caller's default) does not see it
      expect((await host.listRoutes()).map((r) => r.dst)).not.toContain('10.244.7.0/24')
      await expect(
        host.addRoute({
          family: 'inet',
          type: 'blackhole',
          dst: '10.244.8.0/24',
          linkIndex: ethIndex,
        }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'EINVAL'))
      // a unicast delete filtered by type leaves the blackhole route alone
      await expect(
        host.deleteRoute({ family: 'inet', dst: '10.244.7.0/24', type: 'unicast' }),
      ).rejects.toSatisfy((e) => isNetlinkError(e, 'ESRCH'))
      await host.deleteRoute({ family: 'inet', dst: '10.244.7.0/24', type: 'blackhole' })
      expect(await host.listRoutes({ type: 'blackhole' })).toEqual([])
    })

    it('syncBlackholeRoutes blackholes the own subnets, drops its stale ones and keeps foreign ones', async () => {
      const blackholes = async () =>
        (await host.listRoutes({ type: 'blackhole' })).map((r) => `${r.dst} ${r.protocol}`).sort()
      try {
        await host.addRoute({
          family: 'inet',
          type: 'blackhole',
          dst: '10.244.7.0/24',
          protocol: FLANNEL_ROUTE_PROTOCOL,
        })
        await inNs(ns, 'ip', ['route', 'add', 'blackhole', '10.244.8.0/24'])
        const first = await syncBlackholeRoutes(host, ['10.244.9.0/24', 'fd00:9::/64'])
        expect(first).toEqual({
          added: ['10.244.9.0/24', 'fd00:9::/64'],
          removed: ['10.244.7.0/24'],
          yielded: [],
          failed: [],
        })
        expect(await blackholes()).toEqual([
          '10.244.8.0/24 3',
          '10.244.9.0/24 70',
          'fd00:9::/64 70',
        ])
        // the kernel gives an IPv6 blackhole route `dev lo` and its default metric
        expect(await inNs(ns, 'ip', ['-6', 'route', 'show', 'type', 'blackhole'])).toMatch(
          /^blackhole fd00:9::\/64 dev lo proto 70 /m,
        )
        // nothing to do the second time
        expect(await syncBlackholeRoutes(host, ['10.244.9.0/24', 'fd00:9::/64'])).toEqual({
          added: [],
          removed: [],
          yielded: [],
          failed: [],
        })
        // a foreign blackhole for the own subnet is enough (flanneld: "if none exists")
        expect(await syncBlackholeRoutes(host, ['10.244.8.0/24'])).toEqual({
          added: [],
          removed: ['10.244.9.0/24', 'fd00:9::/64'],
          yielded: [],
          failed: [],
        })
        // a bridge address routes the subnet: the blackhole would shadow its
        // connected route (the kernel answers `ip route get` with EINVAL then)
        expect((await syncBlackholeRoutes(host, ['10.244.10.0/24'])).added).toEqual([
          '10.244.10.0/24',
        ])
        await inNs(ns, 'ip', ['link', 'add', `${prefix}br`, 'type', 'bridge'])
        await inNs(ns, 'ip', ['addr', 'add', '10.244.10.1/24', 'dev', `${prefix}br`])
        await inNs(ns, 'ip', ['link', 'set', `${prefix}br`, 'up'])
        await expect(inNs(ns, 'ip', ['route', 'get', '10.244.10.5'])).rejects.toThrow()
        expect(await syncBlackholeRoutes(host, ['10.244.10.0/24'])).toEqual({
          added: [],
          removed: ['10.244.10.0/24'],
          yielded: ['10.244.10.0/24'],
          failed: [],
        })
        expect(await inNs(ns, 'ip', ['route', 'get', '10.244.10.5'])).toContain(`dev ${prefix}br`)
        expect(await blackholes()).toEqual(['10.244.8.0/24 3'])
      } finally {
        await inNs(ns, 'ip', ['route', 'flush', 'type', 'blackhole']).catch(() => '')
        await inNs(ns, 'ip', ['-6', 'route', 'flush', 'type', 'blackhole']).catch(() => '')
        await inNs(ns, 'ip', ['link', 'del', `${prefix}br`]).catch(() => '')
      }
    })
  },
)
