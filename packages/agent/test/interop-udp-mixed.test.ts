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
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  ALLOCATED,
  Flanneld,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
} from '@flannel/testkit/flanneld'
import {
  netnsSkipReason,
  pingMatrix,
  podAddress,
  readLinks,
  startCluster,
  tcpMatrix,
  type Cluster,
} from '@flannel/testkit/netns'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-udp-mixed: skipped: ${skip}`)

describe.skipIf(skip !== undefined)(
  `udp: real flanneld and flannel-agent in one cluster${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let flanneld: Flanneld | undefined
    let dir: string
    const subnets: string[] = []

    async function startFlanneld(): Promise<string> {
      const h1 = cluster!.topology.hosts[0]!
      flanneld = Flanneld.start({
        netns: { name: h1.ns },
        etcdEndpoint: cluster!.endpoint,
        iface: h1.iface,
        subnetFile: join(dir, 'h1.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      // a fresh allocation, or (after a restart) reuse of its lease
      const m = await flanneld.waitForLog(
        new RegExp(`${ALLOCATED.source}|Found lease \\(ip: (\\S+) ipv6: \\S+\\) for current IP`),
        20_000,
      )
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
      return (m[1] ?? m[3])!
    }

    async function startAgent(): Promise<string> {
      cluster!.startAgent(1)
      const env = await cluster!.waitForSubnetEnv(1)
      return env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24')
    }

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-udp-'))
      cluster = await startCluster({
        hosts: 2,
        config: JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }),
      })
      subnets[0] = await startFlanneld()
      subnets[1] = await startAgent()
      for (const [i, host] of cluster.topology.hosts.entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)

    afterAll(async () => {
      await flanneld?.stop()
      await cluster?.destroy()
      if (dir) await rm(dir, { recursive: true, force: true })
    }, 30_000)

    it('both hosts publish the same lease value and a flannel0 of MTU ext-28', async () => {
      const leases = await cluster!.leases()
      const value = (i: number) =>
        leases.find((l) => l.key.endsWith(`/subnets/${subnets[i]!.replace('/', '-')}`))?.value
      expect(value(0)).toBe('{"PublicIP":"192.0.2.1","PublicIPv6":null}')
      expect(value(1)).toBe('{"PublicIP":"192.0.2.2","PublicIPv6":null}')
      for (const host of cluster!.topology.hosts) {
        const [tun] = await readLinks(host.ns, 'flannel0')
        expect(tun?.mtu).toBe(1472)
      }
    })

    it('carries pings and a 1 MiB TCP echo both ways between flanneld and our agent (item 23)', async () => {
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('our agent restarted keeps its subnet; traffic returns (item 24)', async () => {
      await cluster!.stopAgent(1)
      expect(await startAgent()).toBe(subnets[1])
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('flanneld restarted keeps its subnet; traffic returns (item 24)', async () => {
      await flanneld!.stop()
      expect(await startFlanneld()).toBe(subnets[0])
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })
  },
)
