/**
 * A mixed dual-stack vxlan cluster (interop.md 2, items 2, 17, 18, 22, 23):
 * real flanneld on host 1, the `flannel-agent` command on host 2, one etcd on
 * the switch, underlay 192.0.2.0/24 + 2001:db8::/64. Both publish the same
 * lease value shape (PublicIPv6, BackendData and BackendV6Data), build
 * `flannel.1` and `flannel-v6.1` alike, program the same per-peer entries for
 * each other in both families, and carry pings both ways over IPv4 and IPv6.
 * Skipped with a printed reason when no flanneld binary, no root or no etcd is
 * available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { interopSkipReason, startMixedCluster, type MixedCluster } from '@flannel/testkit/flanneld'
import {
  netnsSkipReason,
  pingMatrix,
  podAddress,
  readLinks,
  waitUntil,
  type NetnsHost,
} from '@flannel/testkit/netns'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-dualstack-vxlan: skipped: ${skip}`)

const CONFIG = JSON.stringify({
  Network: '10.244.0.0/16',
  EnableIPv6: true,
  IPv6Network: 'fd00:10:244::/56',
  Backend: { Type: 'vxlan' },
})

interface Side {
  host: NetnsHost
  subnet: string
  ipv6Subnet: string
  publicIPv6: string
  mac: string
  mac6: string
}

/** A lease value with the per-host parts (addresses, MACs) replaced by placeholders. */
function valueShape(value: string, side: Side): string {
  return value
    .replaceAll(side.host.underlayIp, '<ip>')
    .replaceAll(side.publicIPv6, '<ip6>')
    .replaceAll(side.mac6, '<mac6>')
    .replaceAll(side.mac, '<mac>')
}

/** What `host` shows on `dev` for its one peer, with the peer's values as placeholders. */
async function peerEntries(host: NetnsHost, dev: string, v6: boolean, peer: Side) {
  const family = v6 ? ['-6'] : ['-4']
  const text = async (cmd: string, args: string[]) =>
    (await host.exec(cmd, args))
      .trim()
      .split('\n')
      .filter((l) => l !== '')
      .map((l) =>
        l
          .replace(/ proto \S+/, '') // our routes carry proto 70, flanneld's none
          .replaceAll(v6 ? peer.ipv6Subnet : peer.subnet, '<subnet>')
          .replaceAll(v6 ? peer.ipv6Subnet.split('/')[0]! : peer.subnet.split('/')[0]!, '<addr>')
          .replaceAll(v6 ? peer.mac6 : peer.mac, '<mac>')
          .replaceAll(v6 ? peer.publicIPv6 : peer.host.underlayIp, '<public>')
          .trim(),
      )
      .sort()
  return {
    neighbours: await text('ip', [...family, 'neigh', 'show', 'dev', dev]),
    fdb: await text('bridge', ['fdb', 'show', 'dev', dev]),
    // only the routes to the peer: the own address and link-local routes differ by host
    routes: (await text('ip', [...family, 'route', 'show', 'dev', dev])).filter((l) =>
      l.startsWith('<subnet> '),
    ),
  }
}

describe.skipIf(skip !== undefined)(
  `dual-stack vxlan: real flanneld and flannel-agent in one cluster${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mixed: MixedCluster | undefined
    const sides: Side[] = []

    async function side(host: NetnsHost, subnet: string, ipv6Subnet: string): Promise<Side> {
      const [dev] = await readLinks(host.ns, 'flannel.1')
      const [dev6] = await readLinks(host.ns, 'flannel-v6.1')
      return {
        host,
        subnet,
        ipv6Subnet,
        publicIPv6: `2001:db8::${host.n}`,
        mac: dev!.address!,
        mac6: dev6!.address!,
      }
    }

    beforeAll(async () => {
      mixed = await startMixedCluster({ config: CONFIG, ipv6: true })
      for (const [i, host] of mixed.cluster.topology.hosts.entries()) {
        const { subnet, ipv6Subnet } = mixed.subnets[i]!
        sides.push(await side(host, subnet, ipv6Subnet!))
      }
      for (const s of sides) {
        await s.host.addPodAddress(`${podAddress(s.subnet)}/24`)
        await s.host.addPodAddress(s.ipv6Subnet.replace(/::\/64$/, '::1/64'))
      }
    }, 60_000)

    afterAll(async () => {
      await mixed?.destroy()
    }, 30_000)

    it('publishes the same lease value shape: PublicIPv6, BackendData and BackendV6Data (items 2, 22)', async () => {
      const leases = await mixed!.cluster.leases()
      const value = (s: Side) => {
        const key = `${s.subnet.replace('/', '-')}&${s.ipv6Subnet.replace('/', '-')}`
        const found = leases.find((l) => l.key.endsWith(`/subnets/${key}`))
        expect(found, `lease ${key} in ${leases.map((l) => l.key).join(', ')}`).toBeDefined()
        return found!.value
      }
      const theirs = value(sides[0]!)
      console.info(`flanneld dual-stack vxlan lease: ${theirs}`)
      expect(valueShape(value(sides[1]!), sides[1]!)).toBe(valueShape(theirs, sides[0]!))
      expect(valueShape(theirs, sides[0]!)).toBe(
        '{"PublicIP":"<ip>","PublicIPv6":"<ip6>","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"<mac>"},"BackendV6Data":{"VNI":1,"VtepMAC":"<mac6>"}}',
      )
    })

    it('builds flannel.1 and flannel-v6.1 alike (items 17, 22)', async () => {
      for (const dev of ['flannel.1', 'flannel-v6.1']) {
        const [theirs] = await readLinks(sides[0]!.host.ns, dev)
        const [ours] = await readLinks(sides[1]!.host.ns, dev)
        const shape = (l: typeof theirs) => {
          const d = l!.linkinfo!.info_data as Record<string, unknown>
          return {
            mtu: l!.mtu,
            id: d.id,
            port: d.port,
            learning: d.learning,
            gbp: d.gbp,
            local: d.local === undefined ? undefined : 'v4',
            local6: d.local6 === undefined ? undefined : 'v6',
          }
        }
        expect(shape(ours), dev).toEqual(shape(theirs))
      }
    })

    it('programs the same per-peer entries in both families on both hosts (items 18, 22)', async () => {
      const [theirs, ours] = sides as [Side, Side]
      for (const [dev, v6] of [
        ['flannel.1', false],
        ['flannel-v6.1', true],
      ] as const) {
        // the agent may still be applying the peer's lease
        const onOurs = await waitUntil(async () => {
          const e = await peerEntries(ours.host, dev, v6, theirs)
          return e.routes.length > 0 ? e : undefined
        }, 8000)
        const onTheirs = await waitUntil(async () => {
          const e = await peerEntries(theirs.host, dev, v6, ours)
          return e.routes.length > 0 ? e : undefined
        }, 8000)
        console.info(`flanneld ${dev} entries: ${JSON.stringify(onTheirs)}`)
        expect(onOurs, dev).toEqual(onTheirs)
        expect(onTheirs!.routes).toHaveLength(1)
      }
    })

    it('carries pings both ways over IPv4 and IPv6 (item 23)', async () => {
      const hosts = sides.map((s) => s.host)
      expect(
        await pingMatrix(
          hosts,
          sides.map((s) => s.subnet),
        ),
      ).toEqual([])
      for (const [from, to] of [
        [sides[0]!, sides[1]!],
        [sides[1]!, sides[0]!],
      ] as const) {
        const src = from.ipv6Subnet.replace(/::\/64$/, '::1')
        const dst = to.ipv6Subnet.replace(/::\/64$/, '::1')
        const ok = await waitUntil(
          () =>
            from.host
              .exec('ping', ['-6', '-c1', '-W1', '-I', src, dst])
              .then((o) => o.includes('1 received')),
          8000,
          100,
        )
        expect(ok, `${src} -> ${dst}`).toBe(true)
      }
    })
  },
)
