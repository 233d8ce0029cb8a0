/**
 * What real flanneld programs for vxlan peers, and how it reacts to peer
 * renewal, garbage under the prefix, peer deletion and deletion of its own
 * key (interop.md 2, items 12, 13, 14, 16, 17, 18). These are the facts our
 * vxlan backend and agent must reproduce; `readVxlanState` gives the same
 * normalised view for both implementations. Skipped with a printed reason when
 * no flanneld binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeLeaseAttrs } from '@flannel/core/registry'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
  linkNamespaces,
  readVxlanState,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
  type VxlanState,
} from '@flannel/testkit/flanneld'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-flanneld-vxlan: skipped: ${skipReason}`)

const PREFIX = '/vx/network'
const PEER_MAC = '0a:58:0a:f4:c8:00'
const PEER_KEY = `${PREFIX}/subnets/10.244.200.0-24`
const PEER_VALUE = encodeLeaseAttrs({
  publicIP: '192.0.2.12',
  backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: PEER_MAC },
})
const PEER_ENTRIES = {
  neighbours: [`10.244.200.0 lladdr ${PEER_MAC} PERMANENT`],
  fdb: [`${PEER_MAC} dst 192.0.2.12 self permanent`],
  routes: ['10.244.200.0/24 via 10.244.200.0 onlink'],
}

async function until<T>(read: () => Promise<T>, ok: (v: T) => boolean, ms = 8000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await read()
    if (ok(v) || Date.now() > deadline) return v
    await new Promise((r) => setTimeout(r, 100))
  }
}

describe.skipIf(skipReason !== undefined)(
  `real flanneld vxlan kernel state and watch behaviour${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const devA = `${p}a0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let a: Netns
    let b: Netns
    let dir: string
    let flanneld: Flanneld
    let ownSubnet: string

    const peers = async (): Promise<Pick<VxlanState, 'neighbours' | 'fdb' | 'routes'>> => {
      const s = await readVxlanState(a, 'flannel.1')
      return { neighbours: s.neighbours, fdb: s.fdb, routes: s.routes }
    }

    async function putPeer(): Promise<void> {
      const lease = client.lease(86400, { autoKeepAlive: false })
      await lease.put(PEER_KEY).value(PEER_VALUE)
    }

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-vxlan-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      a = await Netns.create(`${p}-a`)
      b = await Netns.create(`${p}-b`)
      await linkNamespaces(
        { ns: a, dev: devA, cidr: '192.0.2.11/24' },
        { ns: b, dev: `${p}b0`, cidr: '192.0.2.12/24' },
      )
      await client
        .put(`${PREFIX}/config`)
        .value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}')
      await putPeer()
      flanneld = Flanneld.start({
        netns: a,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: PREFIX,
        iface: devA,
        subnetFile: join(dir, 'subnet.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      ownSubnet = (await flanneld.waitForLog(ALLOCATED))[1]!
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
    }, 60_000)

    afterAll(async () => {
      await flanneld?.stop()
      await a?.destroy()
      await b?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('creates flannel.1 as backends.md 1.3 describes (item 17)', async () => {
      const s = await readVxlanState(a, 'flannel.1')
      console.info(`flanneld flannel.1: ${JSON.stringify(s)}`)
      expect(s.vxlan).toEqual({
        id: 1,
        local: '192.0.2.11',
        dev: devA,
        port: 8472,
        learning: false,
        gbp: false,
      })
      expect(s.mtu).toBe(1450)
      expect(s.acceptRa).toBe('0')
      // IPv4: the own subnet's network address /32 (an IPv6 link-local address also appears)
      expect(s.addresses.filter((x) => !x.includes(':'))).toEqual([`${ownSubnet.split('/')[0]}/32`])
      expect(s.operstate).toMatch(/UP|UNKNOWN/)
    })

    it('programs neighbour, FDB and onlink route for a peer lease present at start (item 18)', async () => {
      expect(await until(peers, (v) => v.routes.length > 0)).toEqual(PEER_ENTRIES)
    })

    it('leaves the entries unchanged on a peer renewal (item 12)', async () => {
      await putPeer()
      await new Promise((r) => setTimeout(r, 1000))
      expect(await peers()).toEqual(PEER_ENTRIES)
    })

    it('skips garbage keys under the prefix and keeps its peers (item 16, v0.28.10)', async () => {
      await client.put(`${PREFIX}/subnets/garbage`).value('not json')
      await client.put(`${PREFIX}/subnets/10.244.201.0-24`).value('not json')
      await new Promise((r) => setTimeout(r, 1500))
      const after = await peers()
      console.info(`flanneld after garbage keys: ${JSON.stringify(after)}`)
      console.info(
        flanneld.log
          .split('\n')
          .filter((l) => /garbage|201|rror|arning|^W/.test(l))
          .join('\n'),
      )
      expect(after).toEqual(PEER_ENTRIES)
    })

    it('removes the three entries when the peer key is deleted (item 13)', async () => {
      await client.delete().key(PEER_KEY)
      const after = await until(peers, (v) => v.routes.length === 0)
      expect(after).toEqual({ neighbours: [], fdb: [], routes: [] })
    })

    it('removes the entries of a peer whose etcd lease expires (item 13)', async () => {
      const key = `${PREFIX}/subnets/10.244.202.0-24`
      const short = client.lease(2, { autoKeepAlive: false })
      await short.put(key).value(
        encodeLeaseAttrs({
          publicIP: '192.0.2.12',
          backendType: 'vxlan',
          backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:ca:00' },
        }),
      )
      const seen = await until(peers, (v) =>
        v.routes.includes('10.244.202.0/24 via 10.244.202.0 onlink'),
      )
      expect(seen.neighbours).toContain('10.244.202.0 lladdr 0a:58:0a:f4:ca:00 PERMANENT')
      const mentions202 = (v: Awaited<ReturnType<typeof peers>>): string[] =>
        [...v.neighbours, ...v.fdb, ...v.routes].filter((l) =>
          /10\.244\.202\.|0a:58:0a:f4:ca:00/.test(l),
        )
      const gone = await until(peers, (v) => mentions202(v).length === 0, 10_000)
      expect(mentions202(gone)).toEqual([])
    }, 15_000)

    it('exits with status 0 when its own key is deleted (item 14)', async () => {
      const own = `${PREFIX}/subnets/${ownSubnet.replace('/', '-')}`
      await client.delete().key(own)
      await flanneld.waitForLog(/Lease has been revoked\. Shutting down daemon\./)
      expect(await flanneld.waitForExit(5000).catch(() => 'still running')).toBe(0)
    })
  },
)

describe.skipIf(skipReason !== undefined)(
  `real flanneld vxlan DirectRouting (item 19)${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const devA = `${p}a0`
    const prefix = '/vxdr/network'
    let etcd: InteropEtcd
    let a: Netns
    let b: Netns
    let dir: string
    let flanneld: Flanneld | undefined

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-vxdr-'))
      etcd = await startInteropEtcd()
      const client = etcd.connect()
      a = await Netns.create(`${p}-a`)
      b = await Netns.create(`${p}-b`)
      await linkNamespaces(
        { ns: a, dev: devA, cidr: '192.0.2.11/24' },
        { ns: b, dev: `${p}b0`, cidr: '192.0.2.12/24' },
      )
      await client
        .put(`${prefix}/config`)
        .value('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan","DirectRouting":true}}')
      const lease = client.lease(86400, { autoKeepAlive: false })
      // one peer on the shared segment, one behind a router
      await lease.put(`${prefix}/subnets/10.244.200.0-24`).value(PEER_VALUE)
      await lease.put(`${prefix}/subnets/10.244.201.0-24`).value(
        encodeLeaseAttrs({
          publicIP: '198.51.100.9',
          backendType: 'vxlan',
          backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:c9:00' },
        }),
      )
      flanneld = Flanneld.start({
        netns: a,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: devA,
        subnetFile: join(dir, 'subnet.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
    }, 60_000)

    afterAll(async () => {
      await flanneld?.stop()
      await a?.destroy()
      await b?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('routes an on-link peer via its PublicIP and an off-link peer through the VTEP', async () => {
      const state = await until(
        () => readVxlanState(a, 'flannel.1'),
        (s) => s.routes.length >= 1 && s.neighbours.length >= 1,
      )
      const direct = (await a.ip('route', 'show', '10.244.200.0/24')).trim()
      console.info(`flanneld DirectRouting: ${direct}; vxlan ${JSON.stringify(state)}`)
      expect(direct).toBe(`10.244.200.0/24 via 192.0.2.12 dev ${devA}`)
      expect(state.neighbours).toEqual(['10.244.201.0 lladdr 0a:58:0a:f4:c9:00 PERMANENT'])
      expect(state.fdb).toEqual(['0a:58:0a:f4:c9:00 dst 198.51.100.9 self permanent'])
      expect(state.routes).toEqual(['10.244.201.0/24 via 10.244.201.0 onlink'])
    })
  },
)
