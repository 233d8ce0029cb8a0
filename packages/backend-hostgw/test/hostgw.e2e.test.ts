import { parseNetworkConfig, type ExternalInterface, type NetworkEvent } from '@flannel/core'
import { FLANNEL_ROUTE_PROTOCOL } from '@flannel/linux'
import { Subject, filter, firstValueFrom, timeout, type Subscription } from 'rxjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  Namespaces,
  RemoteHostNetwork,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
} from '../../linux/test/helpers/netns.js'
import { HostGwBackend } from '../src/index.js'
import { SharedLeases } from './helpers/shared-registry.js'

const unavailable = await kernelTestsUnavailable()
if (unavailable) console.warn(`host-gw namespace tests skipped: ${unavailable}`)

const config = parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } })

interface TestHost {
  ns: string
  underlay: string
  host: RemoteHostNetwork
  ext: ExternalInterface
  subnet: string
  events: Subject<NetworkEvent>
  run?: Subscription
}

describe.skipIf(unavailable !== undefined)(
  `host-gw across three namespace hosts${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const shared = new SharedLeases(config)
    const hosts: TestHost[] = []

    beforeAll(async () => {
      const sw = await namespaces.create(`${prefix}-sw`)
      await inNs(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge'])
      await inNs(sw, 'ip', ['link', 'set', 'br0', 'up'])
      for (const n of [1, 2, 3]) {
        const ns = await namespaces.create(`${prefix}-h${n}`)
        const port = `${prefix}p${n}`
        // veth: eth0 in the host namespace, the port on the switch bridge.
        await inNs(sw, 'ip', [
          'link',
          'add',
          port,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          ns,
        ])
        await inNs(sw, 'ip', ['link', 'set', port, 'master', 'br0', 'up'])
        const underlay = `192.0.2.${n}`
        await inNs(ns, 'ip', ['addr', 'add', `${underlay}/24`, 'dev', 'eth0'])
        await inNs(ns, 'ip', ['link', 'set', 'eth0', 'up'])
        const host = new RemoteHostNetwork(ns)
        await host.start()
        const eth = (await host.getLink('eth0'))!
        const ext: ExternalInterface = {
          name: 'eth0',
          index: eth.index,
          mtu: eth.mtu,
          ifaceAddr: underlay,
          extAddr: underlay,
        }
        hosts.push({ ns, underlay, host, ext, subnet: '', events: new Subject() })
      }
      // Register all three, then give each a pod address on a bridge (no dummy links here).
      for (const h of hosts) {
        const registry = shared.forHost()
        const backend = new HostGwBackend(
          { registry, extIface: h.ext },
          { host: h.host, checkIntervalMs: 5000 },
        )
        const network = await backend.registerNetwork(config)
        h.subnet = network.lease.subnet.toString()
        const podAddr = `${network.lease.subnet.address.replace(/\.0$/, '.1')}/24`
        await inNs(h.ns, 'ip', ['link', 'add', 'cni0', 'type', 'bridge'])
        await inNs(h.ns, 'ip', ['addr', 'add', podAddr, 'dev', 'cni0'])
        await inNs(h.ns, 'ip', ['link', 'set', 'cni0', 'up'])
        h.run = network.run(registry.peerEvents()).subscribe(h.events)
      }
      // Wait until every host routes both peers.
      for (const h of hosts) {
        for (let i = 0; i < 100; i++) {
          const routes = await h.host.listRoutes({
            family: 'inet',
            protocol: FLANNEL_ROUTE_PROTOCOL,
          })
          if (routes.length === 2) break
          await new Promise((r) => setTimeout(r, 20))
        }
      }
    })

    afterAll(async () => {
      for (const h of hosts) {
        h.run?.unsubscribe()
        await h.host.close()
      }
      await namespaces.removeAll()
    })

    it('installs "<peer subnet> via <peer PublicIP> dev eth0" on every host', async () => {
      for (const h of hosts) {
        const text = await inNs(h.ns, 'ip', [
          'route',
          'show',
          'proto',
          String(FLANNEL_ROUTE_PROTOCOL),
        ])
        const expected = hosts
          .filter((p) => p !== h)
          .map((p) => `${p.subnet} via ${p.underlay} dev eth0`)
        expect(
          text
            .trim()
            .split('\n')
            .map((l) => l.trim())
            .sort(),
        ).toEqual(expected.sort())
      }
    })

    it("carries traffic between every pair of hosts' subnets", async () => {
      for (const from of hosts) {
        for (const to of hosts) {
          if (from === to) continue
          const src = from.subnet.replace(/\.0\/24$/, '.1')
          const dst = to.subnet.replace(/\.0\/24$/, '.1')
          const out = await inNs(from.ns, 'ping', ['-c', '1', '-W', '2', '-I', src, dst])
          expect(out).toContain('1 received')
        }
      }
    })

    it('restores a route deleted by hand', async () => {
      const [a, b] = hosts as [TestHost, TestHost]
      const repaired = firstValueFrom(
        a.events.pipe(
          filter((e) => e.type === 'repaired'),
          timeout(1000),
        ),
      )
      await inNs(a.ns, 'ip', ['route', 'del', b.subnet])
      expect(await repaired).toEqual({
        type: 'repaired',
        what: 'route',
        detail: `${b.subnet} via ${b.underlay}`,
      })
      expect(await inNs(a.ns, 'ip', ['route', 'show', b.subnet])).toContain(
        `via ${b.underlay} dev eth0`,
      )
    })

    it('removes the peer route when its lease is removed', async () => {
      const [a, b, c] = hosts as [TestHost, TestHost, TestHost]
      const removedOnA = firstValueFrom(
        a.events.pipe(
          filter((e) => e.type === 'applied' && e.action === 'remove'),
          timeout(2000),
        ),
      )
      const removedOnB = firstValueFrom(
        b.events.pipe(
          filter((e) => e.type === 'applied' && e.action === 'remove'),
          timeout(2000),
        ),
      )
      c.run?.unsubscribe()
      shared.remove(c.subnet)
      await Promise.all([removedOnA, removedOnB])
      expect(await inNs(a.ns, 'ip', ['route', 'show', c.subnet])).toBe('')
      expect(await inNs(b.ns, 'ip', ['route', 'show', c.subnet])).toBe('')
      // a still reaches b
      const out = await inNs(a.ns, 'ping', [
        '-c',
        '1',
        '-W',
        '2',
        '-I',
        a.subnet.replace(/\.0\/24$/, '.1'),
        b.subnet.replace(/\.0\/24$/, '.1'),
      ])
      expect(out).toContain('1 received')
    })

    it('a restarted backend adopts its routes and removes owned routes nobody wants', async () => {
      const [a] = hosts as [TestHost]
      // a stale route of ours, e.g. left from a lease that expired while the agent was down
      await a.host.replaceRoute({
        family: 'inet',
        dst: '10.244.99.0/24',
        gateway: '192.0.2.99',
        linkIndex: a.ext.index,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      a.run?.unsubscribe()
      const registry = shared.forHost()
      const backend = new HostGwBackend({ registry, extIface: a.ext }, { host: a.host })
      const network = await backend.registerNetwork(config)
      const events = new Subject<NetworkEvent>()
      const stale = firstValueFrom(
        events.pipe(
          filter((e) => e.type === 'repaired' && e.what === 'stale route removed'),
          timeout(2000),
        ),
      )
      const own = network.lease.subnet.toString()
      a.run = network.run(registry.peerEvents()).subscribe(events)
      await stale
      const text = await inNs(a.ns, 'ip', [
        'route',
        'show',
        'proto',
        String(FLANNEL_ROUTE_PROTOCOL),
      ])
      expect(text).not.toContain('10.244.99.0/24')
      expect(text).not.toContain(own)
      // every remaining lease but its own is routed exactly once
      const lines = text.trim().split('\n').filter(Boolean)
      expect(lines).toHaveLength(shared.leases.size - 1)
      shared.remove(own)
    })
  },
)
