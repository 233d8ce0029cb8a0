/**
 * An etcd wipe (issue 12, item 6) under real flanneld v0.28.10 on host 1 and
 * the `flannel-agent` command on host 2, one vxlan cluster. The whole prefix
 * is deleted: flanneld logs `Lease has been revoked. Shutting down daemon.`
 * and exits 0 (it does not come back by itself); the agent keeps running
 * with its entries for flanneld's host unchanged. The config is put back:
 * the agent takes its subnet back. flanneld restarted (as its supervisor
 * would) takes its previous subnet from subnet.env, and pods on both hosts
 * reach each other again. Skipped with a printed reason when no flanneld
 * binary, no root or no etcd is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { interopSkipReason, startMixedCluster, type MixedCluster } from '@flannel/testkit/flanneld'
import {
  netnsSkipReason,
  pingMatrix,
  podAddress,
  readFdb,
  readNeighbours,
  readRoutes,
  waitUntil,
  type NetnsHost,
} from '@flannel/testkit/netns'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-etcd-wipe: skipped: ${skip}`)

const PREFIX = '/coreos.com/network'
const CONFIG = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } })

/** The host's flannel.1 routes, neighbours and FDB entries, as text. */
async function vxlanState(host: NetnsHost): Promise<string[]> {
  return [
    ...(await readRoutes(host.ns, { dev: 'flannel.1' })).map(
      (r) => `route ${r.dst} via ${r.gateway ?? '-'}`,
    ),
    ...(await readNeighbours(host.ns, 'flannel.1')).map((n) => `neigh ${n.dst} ${n.lladdr}`),
    ...(await readFdb(host.ns, 'flannel.1')).map((e) => `fdb ${e.mac} ${e.dst}`),
  ].sort()
}

describe.skipIf(skip !== undefined)(
  `etcd wipe: real flanneld exits, flannel-agent keeps its host and takes its subnet back${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mixed: MixedCluster | undefined

    beforeAll(async () => {
      mixed = await startMixedCluster({ config: CONFIG })
      const hosts = mixed.cluster.topology.hosts
      for (const [i, s] of mixed.subnets.entries()) {
        await hosts[i]!.addPodAddress(`${podAddress(s.subnet)}/24`)
      }
    }, 90_000)
    afterAll(async () => {
      await mixed?.destroy()
    }, 30_000)

    it('flanneld exits 0, the agent stays with its entries, and traffic resumes once flanneld is restarted', async () => {
      const m = mixed!
      const c = m.cluster
      const hosts = c.topology.hosts
      const subnets = m.subnets.map((s) => s.subnet)
      expect(await pingMatrix(hosts, subnets)).toEqual([])
      const agentHost = hosts[1]!
      const before = await vxlanState(agentHost)
      expect(before.filter((e) => e.startsWith('route '))).toEqual([
        `route ${subnets[0]} via ${subnets[0]!.split('/')[0]}`,
      ])

      await c.etcd.etcdctl('del', '--prefix', PREFIX)
      expect(await m.flanneld!.waitForExit(20_000)).toBe(0)
      expect(m.flanneld!.log).toContain('Lease has been revoked. Shutting down daemon.')
      const agent = c.agents[1]!
      const waiting = await waitUntil(
        async () => agent.process.stderr().includes("Couldn't fetch network config: "),
        20_000,
      )
      expect(waiting).toBe(true)
      expect(agent.process.exitCode).toBeUndefined()
      expect(await vxlanState(agentHost)).toEqual(before)

      await c.etcd.etcdctl('put', `${PREFIX}/config`, CONFIG)
      const back = await waitUntil(
        async () =>
          agent.process.stderr().includes(`Network config is back; took subnet ${subnets[1]} back`),
        20_000,
      )
      expect(back).toBe(true)
      expect((await c.leases()).map((l) => l.key)).toEqual([
        `${PREFIX}/subnets/${subnets[1]!.replace('/', '-')}`,
      ])
      expect(await vxlanState(agentHost)).toEqual(before)

      await m.stopFlanneld()
      const again = await m.startFlanneld()
      expect(again.subnet).toBe(subnets[0])
      expect(await pingMatrix(hosts, subnets)).toEqual([])
      expect(await vxlanState(agentHost)).toEqual(before)
      expect(agent.process.exitCode).toBeUndefined()
    }, 120_000)
  },
)
