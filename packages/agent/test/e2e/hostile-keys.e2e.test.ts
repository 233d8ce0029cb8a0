/**
 * Issue 12 end to end: two hosts as network namespaces, one `flannel-agent`
 * (vxlan) each, one etcd. A key for the peer's subnet with host bits set
 * (`10.244.X.5-24`) and one inside the host's own subnet are put with valid
 * vxlan values, then deleted. Neither host's routes, neighbours or FDB
 * entries change (the peer route keeps its VTEP, the pod route stays on
 * cni0) and pods keep reaching each other.
 *
 * A sentinel lease put after the hostile keys (and deleted after them) is
 * the barrier: each agent applies etcd's changes in order, so once a host
 * shows (or dropped) the sentinel's route it has handled the hostile keys.
 * Needs root and etcd; skipped with the reason otherwise.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  netnsSkipReason,
  pingMatrix,
  podAddress,
  readFdb,
  readNeighbours,
  readRoutes,
  startCluster,
  sweepStaleNamespaces,
  waitUntil,
  type Cluster,
  type NetnsHost,
} from '@flannel/testkit/netns'

const skip = (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`hostile-keys e2e skipped: ${skip}`)
else await sweepStaleNamespaces()

const SENTINEL = '10.244.250.0/24'
const vxlanValue = (ip: string, mac: string): string =>
  `{"PublicIP":"${ip}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`

/** Every route of the host and every neighbour and FDB entry of flannel.1, as text. */
async function state(host: NetnsHost): Promise<string[]> {
  return [
    ...(await readRoutes(host.ns)).map(
      (r) => `route ${r.dst} via ${r.gateway ?? '-'} dev ${r.dev}`,
    ),
    ...(await readNeighbours(host.ns, 'flannel.1')).map((n) => `neigh ${n.dst} ${n.lladdr}`),
    ...(await readFdb(host.ns, 'flannel.1')).map((e) => `fdb ${e.mac} ${e.dst}`),
  ].sort()
}

const hasSentinel = async (host: NetnsHost): Promise<boolean> =>
  (await readRoutes(host.ns, { dev: 'flannel.1' })).some((r) => r.dst === SENTINEL)

describe.skipIf(skip !== undefined)(
  `hostile lease keys between two vxlan agents (issue 12)${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    const subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        hosts: 2,
        config: JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }),
      })
      for (let i = 0; i < 2; i++) cluster.startAgent(i)
      for (const [i, host] of cluster.topology.hosts.entries()) {
        const env = await cluster.waitForSubnetEnv(i)
        subnets.push(env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24'))
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it("a key with host bits for the peer's subnet or inside the own one changes nothing, put or deleted", async () => {
      const c = cluster!
      const hosts = c.topology.hosts
      const key = (subnet: string) => `${c.etcdPrefix}/subnets/${subnet.replace('/', '-')}`
      // both hosts route to each other before anything hostile happens
      for (const [i, host] of hosts.entries()) {
        const peer = subnets[1 - i]!
        const ready = await waitUntil(async () =>
          (await readRoutes(host.ns, { dev: 'flannel.1' })).some((r) => r.dst === peer),
        )
        expect(ready, `route to ${peer} on ${host.ns}`).toBe(true)
      }
      expect(await pingMatrix(hosts, subnets)).toEqual([])
      const before = await Promise.all(hosts.map(state))
      for (const [i, s] of before.entries()) {
        expect(s).toContain(`route ${subnets[i]} via - dev cni0`)
        expect(s).toContain(
          `route ${subnets[1 - i]} via ${subnets[1 - i]!.split('/')[0]} dev flannel.1`,
        )
      }

      // the issue's keys: X.5-24 for each host's subnet, with a bogus VTEP
      const hostile = subnets.map((s) => s.replace(/\.0\/24$/, '.5/24'))
      for (const s of hostile)
        await c.etcd.etcdctl('put', key(s), vxlanValue('192.0.2.66', '02:00:00:00:01:66'))
      await c.etcd.etcdctl('put', key(SENTINEL), vxlanValue('192.0.2.250', '02:00:00:00:00:fa'))
      for (const host of hosts) expect(await waitUntil(() => hasSentinel(host))).toBe(true)
      const withSentinel = await Promise.all(hosts.map(state))
      for (const [i, s] of withSentinel.entries()) {
        expect(
          s.filter((e) => !e.includes('10.244.250.0') && !e.includes('02:00:00:00:00:fa')),
        ).toEqual(before[i])
      }

      for (const s of hostile) await c.etcd.etcdctl('del', key(s))
      await c.etcd.etcdctl('del', key(SENTINEL))
      for (const host of hosts)
        expect(await waitUntil(async () => !(await hasSentinel(host)))).toBe(true)
      expect(await Promise.all(hosts.map(state))).toEqual(before)
      expect(await pingMatrix(hosts, subnets)).toEqual([])
    }, 60_000)
  },
)
