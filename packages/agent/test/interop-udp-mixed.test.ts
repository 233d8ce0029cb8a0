/**
 * A mixed udp cluster (interop.md 2, items 21, 23, 24): real flanneld on host
 * 1, the `flannel-agent` command on host 2, one etcd on the switch. Both
 * publish the same lease value, and pings and a 1 MiB TCP echo cross between
 * flanneld's per-packet loop and our addon both ways (our side segments and
 * coalesces TCP super-packets; flanneld must still see plain IPv4 packets of
 * at most its TUN MTU). Restarting either side keeps its subnet and traffic
 * returns. Skipped with a printed reason when no flanneld binary, no root or
 * no etcd is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { interopSkipReason, startMixedCluster, type MixedCluster } from '@flannel/testkit/flanneld'
import {
  netnsSkipReason,
  pingMatrix,
  podAddress,
  readLinks,
  tcpMatrix,
} from '@flannel/testkit/netns'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-udp-mixed: skipped: ${skip}`)

describe.skipIf(skip !== undefined)(
  `udp: real flanneld and flannel-agent in one cluster${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mixed: MixedCluster | undefined
    const hosts = () => mixed!.cluster.topology.hosts
    const subnets = () => mixed!.subnets.map((s) => s.subnet)

    beforeAll(async () => {
      mixed = await startMixedCluster({
        config: JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }),
      })
      for (const [i, host] of hosts().entries()) {
        await host.addPodAddress(`${podAddress(subnets()[i]!)}/24`)
      }
    }, 60_000)

    afterAll(async () => {
      await mixed?.destroy()
    }, 30_000)

    it('both hosts publish the same lease value and a flannel0 of MTU ext-28', async () => {
      const leases = await mixed!.cluster.leases()
      const value = (i: number) =>
        leases.find((l) => l.key.endsWith(`/subnets/${subnets()[i]!.replace('/', '-')}`))?.value
      expect(value(0)).toBe('{"PublicIP":"192.0.2.1","PublicIPv6":null}')
      expect(value(1)).toBe('{"PublicIP":"192.0.2.2","PublicIPv6":null}')
      for (const host of hosts()) {
        const [tun] = await readLinks(host.ns, 'flannel0')
        expect(tun?.mtu).toBe(1472)
      }
    })

    it('carries pings and a 1 MiB TCP echo both ways between flanneld and our agent (item 23)', async () => {
      expect(await pingMatrix(hosts(), subnets())).toEqual([])
      expect(await tcpMatrix(hosts(), subnets())).toEqual([])
    })

    it('our agent restarted keeps its subnet; traffic returns (item 24)', async () => {
      const before = subnets()[1]
      await mixed!.stopAgent()
      expect((await mixed!.startAgent()).subnet).toBe(before)
      expect(await pingMatrix(hosts(), subnets())).toEqual([])
      expect(await tcpMatrix(hosts(), subnets())).toEqual([])
    })

    it('flanneld restarted keeps its subnet; traffic returns (item 24)', async () => {
      const before = subnets()[0]
      await mixed!.stopFlanneld()
      expect((await mixed!.startFlanneld()).subnet).toBe(before)
      expect(await pingMatrix(hosts(), subnets())).toEqual([])
      expect(await tcpMatrix(hosts(), subnets())).toEqual([])
    })
  },
)
