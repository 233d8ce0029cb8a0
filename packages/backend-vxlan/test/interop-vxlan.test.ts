/**
 * Mixed vxlan cluster: real flanneld on host 1, our VxlanBackend on host 2,
 * one etcd (interop.md 2, items 2, 8, 17, 18, 23). Our side's lease goes to
 * etcd in flanneld's format through the testkit's fixed-subnet registry.
 * Checks: the bytes our backend publishes (with the real MAC of its device),
 * the device and per-peer kernel state on both hosts side by side, ping both
 * ways, and removal in both directions. Skipped with the reason when no
 * flanneld binary is available.
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
  readVxlanState,
  runPrefix,
  startInteropEtcd,
  type FixedSubnetRegistry,
  type InteropEtcd,
  type VxlanState,
} from '@flannel/testkit/flanneld'
import { RemoteHostNetwork } from '../../linux/test/helpers/netns.js'
import { VxlanBackend } from '../src/index.js'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-vxlan: skipped: ${skipReason}`)

const PREFIX = '/vxmix/network'
const CONFIG_TEXT = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'
const OUR_SUBNET = Ip4Net.parse('10.244.200.0/24')

/**
 * The device state with the parts that differ by host (own address, ext
 * device) taken out. accept_ra is left out: our side cannot set it from this
 * process (see `procSys` below); flanneld's is checked in the testkit's test.
 */
function shape(s: VxlanState): object {
  return {
    mtu: s.mtu,
    vxlan: { id: s.vxlan.id, port: s.vxlan.port, learning: s.vxlan.learning, gbp: s.vxlan.gbp },
  }
}

/** What a host must have for one peer (backends.md 1.3). */
function peerEntries(peerSubnet: string, peerMac: string, peerPublicIp: string): object {
  const addr = peerSubnet.split('/')[0]
  return {
    neighbours: [`${addr} lladdr ${peerMac} PERMANENT`],
    fdb: [`${peerMac} dst ${peerPublicIp} self permanent`],
    routes: [`${peerSubnet} via ${addr} onlink`],
  }
}

describe.skipIf(skipReason !== undefined)(
  `vxlan: real flanneld and VxlanBackend side by side${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    const spaces: Netns[] = []
    let h1: Netns
    let h2: Netns
    let host2: RemoteHostNetwork | undefined
    let run: Subscription | undefined
    let flanneld: Flanneld | undefined
    let dir: string
    let registry: FixedSubnetRegistry
    let flannelSubnet: string

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-vxmix-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      await client.put(`${PREFIX}/config`).value(CONFIG_TEXT)
      ;[, h1, h2] = (await bridgedHosts(p, 2, spaces)) as [Netns, Netns, Netns]

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

      host2 = new RemoteHostNetwork(h2.name)
      await host2.start()
      const eth = (await host2.getLink('eth0'))!
      registry = fixedSubnetRegistry({
        client,
        prefix: PREFIX,
        configText: CONFIG_TEXT,
        subnet: OUR_SUBNET,
      })
      const backend = new VxlanBackend(
        {
          registry,
          extIface: {
            name: 'eth0',
            index: eth.index,
            mtu: eth.mtu,
            ifaceAddr: '192.0.2.2',
            extAddr: '192.0.2.2',
          },
        },
        // accept_ra is written through this process's /proc/sys, which is not host 2's
        // namespace: switched off here so nothing outside the test's namespaces is touched
        { host: host2, procSys: false },
      )
      const network = await backend.registerNetwork(parseNetworkConfig(CONFIG_TEXT))
      run = network.run(registry.watchLeases()).subscribe()

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

    async function settled(ns: Netns): Promise<VxlanState> {
      const deadline = Date.now() + 8000
      for (;;) {
        const s = await readVxlanState(ns, 'flannel.1')
        if (s.routes.length > 0 || Date.now() > deadline) return s
        await new Promise((r) => setTimeout(r, 100))
      }
    }

    it('publishes the bytes flanneld publishes for vxlan, with its device MAC', async () => {
      const ours = await readVxlanState(h2, 'flannel.1')
      expect(registry.written()).toBe(
        `{"PublicIP":"192.0.2.2","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${ours.mac}"}}`,
      )
    })

    it('creates the same device as flanneld (items 10, 11, 13, 17)', async () => {
      const theirs = await readVxlanState(h1, 'flannel.1')
      const ours = await readVxlanState(h2, 'flannel.1')
      expect(shape(ours)).toEqual(shape(theirs))
      expect(ours.vxlan.local).toBe('192.0.2.2')
      expect(ours.vxlan.dev).toBe('eth0')
      expect(ours.addresses.filter((a) => !a.includes(':'))).toEqual(['10.244.200.0/32'])
    })

    it('each side holds the other as a peer, exactly as flanneld does (items 12, 18)', async () => {
      const theirs = await settled(h1)
      const ours = await settled(h2)
      const pick = (s: VxlanState): object => ({
        neighbours: s.neighbours,
        fdb: s.fdb,
        routes: s.routes,
      })
      expect(pick(theirs)).toEqual(peerEntries(OUR_SUBNET.toString(), ours.mac, '192.0.2.2'))
      expect(pick(ours)).toEqual(peerEntries(flannelSubnet, theirs.mac, '192.0.2.1'))
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

    it('removal in both directions (item 13)', async () => {
      await client.delete().key(`${PREFIX}/subnets/${subnetKey(OUR_SUBNET)}`)
      await client.delete().key(`${PREFIX}/subnets/${flannelSubnet.replace('/', '-')}`)
      const empty = { neighbours: [], fdb: [], routes: [] }
      for (const ns of [h1, h2]) {
        const deadline = Date.now() + 8000
        let s = await readVxlanState(ns, 'flannel.1')
        while (s.routes.length > 0 && Date.now() < deadline) {
          await new Promise((r) => setTimeout(r, 100))
          s = await readVxlanState(ns, 'flannel.1')
        }
        expect({ neighbours: s.neighbours, fdb: s.fdb, routes: s.routes }).toEqual(empty)
      }
    })
  },
)
