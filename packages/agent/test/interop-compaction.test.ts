/**
 * Compaction past a cut-off watcher (interop.md 2, item 15), with real
 * flanneld on host 1 and the `flannel-agent` command on host 2 in one vxlan
 * cluster. Both processes are frozen, etcd is restarted (their watch
 * connections break), one peer lease is deleted and another written, and the
 * history is compacted past both watchers' revisions. When the processes go
 * on, each must notice the compaction, re-list, and apply exactly the
 * difference: the deleted peer's entries go, the new peer's come, and the
 * entries for each other stay. flanneld v0.28.10 re-lists but then stalls on
 * a removal of its own lease (see the comment in the test), so on its side
 * only the re-list is asserted. Skipped with a printed reason when no flanneld
 * binary, no root or no etcd is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { encodeLeaseAttrs } from '@flannel/core/registry'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  interopSkipReason,
  startMixedCluster,
  type Flanneld,
  type MixedCluster,
} from '@flannel/testkit/flanneld'
import {
  netnsSkipReason,
  readRoutes,
  waitUntil,
  type Cluster,
  type NetnsHost,
} from '@flannel/testkit/netns'
import { pauseProcess, resumeProcess } from '@flannel/testkit/proc'

const skip = interopSkipReason() ?? (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`interop-compaction: skipped: ${skip}`)

const PREFIX = '/coreos.com/network'
const GONE = '10.244.250.0/24'
const NEW = '10.244.251.0/24'

/** A fake vxlan peer's lease value (the peer itself does not exist; only entries are checked). */
function peerValue(n: number): string {
  return encodeLeaseAttrs({
    publicIP: `192.0.2.${n}`,
    backendType: 'vxlan',
    backendData: { VNI: 1, VtepMAC: `02:00:00:00:00:${n}` },
  })
}

describe.skipIf(skip !== undefined)(
  `compaction: real flanneld and flannel-agent resume past a compacted revision${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let mixed: MixedCluster | undefined
    let cluster: Cluster | undefined
    let flanneld: Flanneld | undefined
    let subnets: string[] = []

    const routesOn = async (host: NetnsHost): Promise<string[]> =>
      (await readRoutes(host.ns, { dev: 'flannel.1' })).map((r) => r.dst).sort()

    async function putPeer(subnet: string, n: number): Promise<void> {
      const granted = await cluster!.etcd.etcdctl('lease', 'grant', '86400')
      const id = /lease ([0-9a-f]+) granted/.exec(granted)![1]!
      await cluster!.etcd.etcdctl(
        'put',
        `--lease=${id}`,
        `${PREFIX}/subnets/${subnet.replace('/', '-')}`,
        peerValue(n),
      )
    }

    beforeAll(async () => {
      mixed = await startMixedCluster({
        config: JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }),
      })
      cluster = mixed.cluster
      flanneld = mixed.flanneld
      subnets = mixed.subnets.map((s) => s.subnet)
    }, 60_000)

    afterAll(async () => {
      for (const pid of [flanneld?.pid, cluster?.agents[1]?.process.pid]) {
        if (pid !== undefined) {
          try {
            resumeProcess(pid)
          } catch {
            // already gone
          }
        }
      }
      await mixed?.destroy()
    }, 30_000)

    it('each side re-lists and applies only the difference', async () => {
      const [h1, h2] = cluster!.topology.hosts as [NetnsHost, NetnsHost]
      await putPeer(GONE, 50)
      const before = {
        flanneld: [GONE, subnets[1]!].sort(),
        agent: [GONE, subnets[0]!].sort(),
      }
      expect(
        await waitUntil(async () => (await routesOn(h1)).join() === before.flanneld.join(), 10_000),
      ).toBe(true)
      expect(
        await waitUntil(async () => (await routesOn(h2)).join() === before.agent.join(), 10_000),
      ).toBe(true)

      const agentPid = cluster!.agents[1]!.process.pid
      await pauseProcess(flanneld!.pid!)
      await pauseProcess(agentPid)
      let resumed = false
      try {
        await cluster!.etcd.kill()
        await cluster!.etcd.restart()
        await cluster!.etcd.etcdctl('del', `${PREFIX}/subnets/${GONE.replace('/', '-')}`)
        await putPeer(NEW, 51)
        const status = JSON.parse(
          await cluster!.etcd.etcdctl('endpoint', 'status', '-w', 'json'),
        ) as {
          Status: { header: { revision: number } }
        }[]
        const revision = status[0]!.Status.header.revision
        await cluster!.etcd.etcdctl('compact', String(revision), '--physical')
      } finally {
        resumeProcess(flanneld!.pid!)
        resumeProcess(agentPid)
        resumed = true
      }
      expect(resumed).toBe(true)

      const after = {
        flanneld: [NEW, subnets[1]!].sort(),
        agent: [NEW, subnets[0]!].sort(),
      }
      const agentRoutes = await waitUntil(async () => {
        const r = await routesOn(h2)
        return r.join() === after.agent.join() ? r : undefined
      }, 30_000)
      expect(agentRoutes ?? (await routesOn(h2))).toEqual(after.agent)
      // it got there by re-listing, not from a replay of the deleted history
      expect(cluster!.agents[1]!.process.stderr()).toContain('lease watch resynchronised')
      // flanneld v0.28.10 re-lists too (it logs the compaction and adds the new
      // peer), but its LeaseWatcher.Reset reports its own lease as removed; the
      // vxlan backend then retries deleting entries that never existed, with
      // backoff, for minutes before it gets to the deleted peer. So only the
      // re-list is asserted on its side; what it still holds is printed.
      const flanneldRoutes = await waitUntil(async () => {
        const r = await routesOn(h1)
        return r.includes(NEW) ? r : undefined
      }, 30_000)
      expect(flanneldRoutes ?? (await routesOn(h1))).toEqual(
        expect.arrayContaining([NEW, subnets[1]!]),
      )
      expect(flanneld!.log).toMatch(/fell behind compaction horizon/)
      console.info(
        `flanneld after compaction: routes on flannel.1 ${JSON.stringify(await routesOn(h1))} (the deleted peer ${GONE} ${(await routesOn(h1)).includes(GONE) ? 'still there' : 'removed'})`,
      )
      // both still running, neither lost its lease
      expect(flanneld!.exitCode).toBeNull()
      expect(cluster!.agents[1]!.process.exitCode).toBeUndefined()
      const keys = (await cluster!.leases()).map((l) => l.key).sort()
      expect(keys).toEqual(
        [NEW, subnets[0]!, subnets[1]!]
          .map((s) => `${PREFIX}/subnets/${s.replace('/', '-')}`)
          .sort(),
      )
    }, 90_000)
  },
)
