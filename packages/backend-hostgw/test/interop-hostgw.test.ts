/**
 * Mixed host-gw cluster: real flanneld on host 1, our HostGwBackend on host 2,
 * one etcd (interop.md 2, items 2, 20, 23). Our side's lease is written to
 * etcd as flanneld writes leases (fresh 86400 s etcd lease, create guarded by
 * version == 0), with the attrs our backend asked for; our side learns
 * flanneld's lease from etcd through core's key and value codec. Checks: the
 * value bytes our backend publishes, the routes on both hosts, ping both ways,
 * and flanneld's repair of a route deleted by hand. Skipped with a printed
 * reason when no flanneld binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subscription } from 'rxjs'
import { Ip4Net, parseNetworkConfig } from '@flannel/core'
import { subnetKey } from '@flannel/core/registry'
import type { Netns } from '@flannel/testkit/flanneld'
import {
  bridgedHosts,
  ALLOCATED,
  Flanneld,
  SUBNET_FILE_WRITTEN,
  fixedSubnetRegistry,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type FixedSubnetRegistry,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'
import { RemoteHostNetwork } from '../../linux/test/helpers/netns.js'
import { HostGwBackend } from '../src/index.js'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-hostgw: skipped: ${skipReason}`)

const PREFIX = '/hg/network'
const CONFIG_TEXT = '{"Network":"10.244.0.0/16","Backend":{"Type":"host-gw"}}'
const OUR_SUBNET = Ip4Net.parse('10.244.200.0/24')

type Etcd = ReturnType<InteropEtcd['connect']>

describe.skipIf(skipReason !== undefined)(
  `host-gw: real flanneld and HostGwBackend side by side${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    let etcd: InteropEtcd
    let client: Etcd
    const spaces: Netns[] = []
    let h1: Netns
    let h2: Netns
    let host2: RemoteHostNetwork | undefined
    let run: Subscription | undefined
    let flanneld: Flanneld | undefined
    let dir: string
    let bridge: FixedSubnetRegistry
    let flannelSubnet: string

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-hostgw-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      await client.put(`${PREFIX}/config`).value(CONFIG_TEXT)
      ;[, h1, h2] = (await bridgedHosts(p, 2, spaces)) as [Netns, Netns, Netns]

      // flanneld on host 1
      flanneld = Flanneld.start({
        netns: h1,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: PREFIX,
        iface: 'eth0',
        subnetFile: join(dir, 'h1.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      flannelSubnet = (await flanneld.waitForLog(ALLOCATED))[1]!
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)

      // our backend on host 2
      host2 = new RemoteHostNetwork(h2.name)
      await host2.start()
      const eth = (await host2.getLink('eth0'))!
      bridge = fixedSubnetRegistry({
        client,
        prefix: PREFIX,
        configText: CONFIG_TEXT,
        subnet: OUR_SUBNET,
      })
      const backend = new HostGwBackend(
        {
          registry: bridge,
          extIface: {
            name: 'eth0',
            index: eth.index,
            mtu: eth.mtu,
            ifaceAddr: '192.0.2.2',
            extAddr: '192.0.2.2',
          },
        },
        { host: host2 },
      )
      const network = await backend.registerNetwork(parseNetworkConfig(CONFIG_TEXT))
      run = network.run(bridge.watchLeases()).subscribe()

      // a pod address on each host (a bridge holds it: no dummy links here)
      for (const [ns, subnet] of [
        [h1, flannelSubnet],
        [h2, OUR_SUBNET.toString()],
      ] as const) {
        await ns.ip('link', 'add', 'cni0', 'type', 'bridge')
        await ns.ip('addr', 'add', subnet.replace(/\.0\/24$/, '.1/24'), 'dev', 'cni0')
        await ns.ip('link', 'set', 'cni0', 'up')
      }
    }, 60_000)

    afterAll(async () => {
      run?.unsubscribe()
      await host2?.close()
      await flanneld?.stop()
      for (const ns of spaces.reverse()) await ns.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    async function routeTo(ns: Netns, subnet: string): Promise<string> {
      const deadline = Date.now() + 8000
      for (;;) {
        const out = (await ns.ip('route', 'show', subnet)).trim()
        if (out !== '' || Date.now() > deadline) return out
        await new Promise((r) => setTimeout(r, 100))
      }
    }

    it('our backend publishes the bytes flanneld publishes for host-gw', () => {
      expect(bridge.written()).toBe(
        '{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"host-gw"}',
      )
    })

    it('each side routes the other subnet via the peer PublicIP on eth0 (item 20)', async () => {
      console.info(
        `flanneld host: ${(await h1.ip('-d', 'route', 'show', OUR_SUBNET.toString())).trim()}`,
      )
      console.info(
        `our host: ${(await routeTo(h2, flannelSubnet)) && (await h2.ip('-d', 'route', 'show', flannelSubnet)).trim()}`,
      )
      expect(await routeTo(h1, OUR_SUBNET.toString())).toBe(
        `${OUR_SUBNET.toString()} via 192.0.2.2 dev eth0`,
      )
      // ours adds `proto <flannel>`; flanneld's route has the default protocol (boot)
      expect(await routeTo(h2, flannelSubnet)).toMatch(
        new RegExp(`^${flannelSubnet.replace(/\./g, '\\.')} via 192\\.0\\.2\\.1 dev eth0`),
      )
    })

    it('pod addresses reach each other in both directions (item 23)', async () => {
      const ours = OUR_SUBNET.toString().replace(/\.0\/24$/, '.1')
      const theirs = flannelSubnet.replace(/\.0\/24$/, '.1')
      expect(await h1.exec('ping', '-c', '1', '-W', '2', '-I', theirs, ours)).toContain(
        '1 received',
      )
      expect(await h2.exec('ping', '-c', '1', '-W', '2', '-I', ours, theirs)).toContain(
        '1 received',
      )
    })

    it('flanneld restores a route deleted by hand (item 20)', async () => {
      await h1.ip('route', 'del', OUR_SUBNET.toString())
      const deadline = Date.now() + 15_000
      let out = ''
      while (Date.now() < deadline) {
        out = (await h1.ip('route', 'show', OUR_SUBNET.toString())).trim()
        if (out !== '') break
        await new Promise((r) => setTimeout(r, 250))
      }
      expect(out).toBe(`${OUR_SUBNET.toString()} via 192.0.2.2 dev eth0`)
    }, 20_000)

    it('flanneld removes its route when our lease key is deleted (item 13)', async () => {
      await client.delete().key(`${PREFIX}/subnets/${subnetKey(OUR_SUBNET)}`)
      const deadline = Date.now() + 8000
      let out = 'x'
      while (Date.now() < deadline) {
        out = (await h1.ip('route', 'show', OUR_SUBNET.toString())).trim()
        if (out === '') break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(out).toBe('')
    })

    it("our backend removes its route when flanneld's lease key is deleted, and flanneld exits 0 (items 13, 14)", async () => {
      await client.delete().key(`${PREFIX}/subnets/${flannelSubnet.replace('/', '-')}`)
      const deadline = Date.now() + 8000
      let out = 'x'
      while (Date.now() < deadline) {
        out = (await h2.ip('route', 'show', flannelSubnet)).trim()
        if (out === '') break
        await new Promise((r) => setTimeout(r, 100))
      }
      expect(out).toBe('')
      expect(await flanneld!.waitForExit(5000)).toBe(0)
    })
  },
)
