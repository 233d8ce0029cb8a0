/**
 * `--ip-blackhole-route` side by side (core.md 9.4): real flanneld on host 1
 * and `flannel-agent` on host 2, both with the flag and `--iptables-resync=1`,
 * alloc backend, one etcd. Both blackhole their own subnet (flanneld with the
 * kernel's default protocol, ours with proto 70). Then a bridge takes each
 * host's subnet, as a CNI bridge does: flanneld keeps its blackhole, which
 * shadows the bridge's route (the pods become unreachable); ours yields.
 * Skipped with a printed reason when no flanneld binary, no root or no etcd
 * is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { interopSkipReason, startMixedCluster, type MixedCluster } from '@flannel/testkit/flanneld'
import { netnsSkipReason, podAddress, waitUntil, type NetnsHost } from '@flannel/testkit/netns'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-blackhole: skipped: ${skip}`)

const blackholes = async (host: NetnsHost): Promise<string[]> =>
  (await host.exec('ip', ['route', 'show', 'type', 'blackhole']))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')

describe.skipIf(skip !== undefined)(
  `--ip-blackhole-route: real flanneld and flannel-agent${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mixed: MixedCluster | undefined
    const subnets: string[] = []
    const hosts = () => mixed!.cluster.topology.hosts as [NetnsHost, NetnsHost]

    beforeAll(async () => {
      const flags = ['--ip-blackhole-route', '--iptables-resync=1']
      mixed = await startMixedCluster({
        config: JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'alloc' } }),
        agentFlags: flags,
        flanneldArgs: flags,
      })
      subnets.push(...mixed.subnets.map((s) => s.subnet))
    }, 60_000)

    afterAll(async () => {
      await mixed?.destroy()
    }, 30_000)

    it('both blackhole the own subnet; flanneld with proto boot (not shown by ip), ours with proto 70', async () => {
      const [h1, h2] = hosts()
      // flanneld adds it only after the first --iptables-resync interval
      const theirs = await waitUntil(async () => {
        const b = await blackholes(h1)
        return b.length > 0 ? b : undefined
      }, 10_000)
      console.info(`flanneld: ${JSON.stringify(theirs)}`)
      expect(theirs).toEqual([`blackhole ${subnets[0]}`])
      expect(await blackholes(h2)).toEqual([`blackhole ${subnets[1]} proto 70`])
    })

    it('a bridge taking the subnet: flanneld keeps its blackhole (pods unreachable), ours yields', async () => {
      const [h1, h2] = hosts()
      for (const [i, host] of hosts().entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
      const pod = (i: number) => podAddress(subnets[i]!).replace(/\.1$/, '.5')
      const ours = await waitUntil(async () => {
        const b = await blackholes(h2)
        return b.length === 0 ? b : undefined
      }, 10_000)
      expect(ours).toEqual([])
      expect(await h2.exec('ip', ['route', 'get', pod(1)])).toContain('dev cni0')
      // give flanneld two of its checks; its blackhole stays and wins the lookup
      await new Promise((r) => setTimeout(r, 2500))
      expect(await blackholes(h1)).toEqual([`blackhole ${subnets[0]}`])
      const lookup = await h1.exec('ip', ['route', 'get', pod(0)]).then(
        (out) => out,
        (e: Error) => e.message,
      )
      console.info(`flanneld host, ip route get ${pod(0)}: ${lookup.trim()}`)
      expect(lookup).not.toContain('dev cni0')
    })
  },
)
