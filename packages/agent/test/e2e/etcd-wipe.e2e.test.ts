/**
 * Issue 12, item 6 end to end: three hosts as network namespaces, one
 * `flannel-agent` (vxlan) each, one etcd.
 *
 * 1. The whole prefix, config included, is deleted in one change (`etcdctl
 *    del --prefix`). No agent exits, no route, neighbour or FDB entry
 *    changes and pings between the pods never stop; every agent logs
 *    flanneld's `Couldn't fetch network config` and waits. The config is
 *    put back: every host takes its previous subnet back (the same key and
 *    value in etcd, the same subnet.env), and a peer's lease deleted
 *    afterwards is applied again.
 * 2. Only the leases are deleted, the config stays: every agent exits with
 *    flanneld's `Lease has been revoked. Shutting down daemon.`, and the
 *    hosts' entries stay, so pods keep reaching each other.
 *
 * A sentinel lease put after a deletion is the barrier that each agent's
 * peer watch has handled the deletion (etcd delivers changes in order).
 * Needs root and etcd; skipped with the reason otherwise.
 */
import { readFile } from 'node:fs/promises'
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
import type { ManagedProcess } from '@flannel/testkit/proc'

const skip = (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`etcd wipe e2e skipped: ${skip}`)
else await sweepStaleNamespaces()

const CONFIG = JSON.stringify({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } })
const SENTINEL = '10.244.250.0/24'
const SENTINEL_MAC = '02:00:00:00:00:fa'
const SENTINEL_VALUE = `{"PublicIP":"192.0.2.250","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${SENTINEL_MAC}"}}`

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

const withoutSentinel = (s: string[]): string[] =>
  s.filter((e) => !e.includes(SENTINEL.split('/')[0]!) && !e.includes(SENTINEL_MAC))

const hasSentinel = async (host: NetnsHost): Promise<boolean> =>
  (await readRoutes(host.ns, { dev: 'flannel.1' })).some((r) => r.dst === SENTINEL)

/** The messages an agent logged (pino JSON on stderr). */
function messages(proc: ManagedProcess): string[] {
  return proc
    .stderr()
    .split('\n')
    .flatMap((line) => {
      try {
        return [(JSON.parse(line) as { msg?: string }).msg ?? '']
      } catch {
        return []
      }
    })
}

/** One ping every 0.2 s from each host's pod to the next host's, until `stop`. */
function startPings(hosts: readonly NetnsHost[], subnets: readonly string[]) {
  const pings = hosts.map((from, i) => {
    const j = (i + 1) % hosts.length
    return from.spawn('ping', [
      '-n',
      '-i',
      '0.2',
      '-I',
      podAddress(subnets[i]!),
      podAddress(subnets[j]!),
    ])
  })
  return {
    /** Resolves when every pair got its first reply. */
    started: Promise.all(pings.map((p) => p.waitFor(/bytes from/))),
    /**
     * Stops the pings; returns per pair the sequence numbers that went
     * unanswered while a later one was answered. The requests still in
     * flight when ping is stopped are not losses (ping's own
     * transmitted/received count takes them as such, and on a busy machine
     * one often is).
     */
    async stop(): Promise<{ pair: string; answered: number; lost: number[] }[]> {
      await Promise.all(pings.map((p) => p.stop('SIGINT')))
      return pings.map((p, i) => {
        const seqs = new Set(
          [...p.stdout().matchAll(/bytes from .*icmp_seq=(\d+)/g)].map((m) => Number(m[1])),
        )
        const last = Math.max(0, ...seqs)
        const lost: number[] = []
        for (let seq = 1; seq <= last; seq++) if (!seqs.has(seq)) lost.push(seq)
        return { pair: `${i + 1} -> ${((i + 1) % hosts.length) + 1}`, answered: seqs.size, lost }
      })
    },
  }
}

describe.skipIf(skip !== undefined)(
  `etcd wipe under three vxlan agents (issue 12, item 6)${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    const subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({ config: CONFIG })
      const c = cluster
      c.topology.hosts.forEach((_, i) => c.startAgent(i))
      for (const [i, host] of c.topology.hosts.entries()) {
        const env = await c.waitForSubnetEnv(i, 60_000)
        subnets.push(env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24'))
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
      // every host routes to both peers before anything is deleted
      for (const host of c.topology.hosts) {
        const ready = await waitUntil(
          async () => (await readRoutes(host.ns, { dev: 'flannel.1' })).length === 2,
          20_000,
        )
        expect(ready, `routes on ${host.ns}`).toBe(true)
      }
    }, 120_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('a wiped prefix: no agent exits, the data plane and pings stay, each host takes its subnet back', async () => {
      const c = cluster!
      const hosts = c.topology.hosts
      const agents = c.agents.map((a) => a!)
      const sentinelKey = `${c.etcdPrefix}/subnets/${SENTINEL.replace('/', '-')}`
      expect(await pingMatrix(hosts, subnets)).toEqual([])
      const before = await Promise.all(hosts.map(state))
      const leasesBefore = (await c.leases()).sort((a, b) => a.key.localeCompare(b.key))
      const envBefore = await Promise.all(agents.map((a) => readFile(a.subnetFile, 'utf8')))
      expect(leasesBefore).toHaveLength(3)

      const pings = startPings(hosts, subnets)
      try {
        await pings.started
        await c.etcd.etcdctl('del', '--prefix', c.etcdPrefix)
        expect(await c.etcd.etcdctl('get', '--prefix', c.etcdPrefix)).toBe('')
        await c.etcd.etcdctl('put', sentinelKey, SENTINEL_VALUE)
        for (const host of hosts) expect(await waitUntil(() => hasSentinel(host))).toBe(true)
        for (const agent of agents) {
          const waiting = await waitUntil(
            async () =>
              messages(agent.process).some((m) =>
                m.startsWith(
                  "Couldn't fetch network config: flannel config not found in etcd store.",
                ),
              ),
            20_000,
          )
          expect(waiting, `${agent.host.ns} waits for the config`).toBe(true)
        }
        expect(agents.map((a) => a.process.exitCode)).toEqual([undefined, undefined, undefined])
        const during = await Promise.all(hosts.map(state))
        expect(during.map(withoutSentinel)).toEqual(before)

        await c.etcd.etcdctl('put', `${c.etcdPrefix}/config`, CONFIG)
        const back = await waitUntil(async () => (await c.leases()).length === 4, 20_000)
        expect(back).toBe(true)
        for (const [i, agent] of agents.entries()) {
          const took = await waitUntil(async () =>
            messages(agent.process).includes(
              `Network config is back; took subnet ${subnets[i]} back`,
            ),
          )
          expect(took, `${agent.host.ns} took ${subnets[i]} back`).toBe(true)
        }
        const leasesAfter = (await c.leases())
          .filter((l) => l.key !== sentinelKey)
          .sort((a, b) => a.key.localeCompare(b.key))
        expect(leasesAfter).toEqual(leasesBefore)

        // with the own lease back, a lease deleted is applied again
        await c.etcd.etcdctl('del', sentinelKey)
        for (const host of hosts)
          expect(await waitUntil(async () => !(await hasSentinel(host)))).toBe(true)
      } finally {
        const counts = await pings.stop()
        // no ping lost at any point: the data plane was never touched
        expect(counts.map((c) => [c.pair, c.lost])).toEqual(counts.map((c) => [c.pair, []]))
        for (const c of counts) expect(c.answered, c.pair).toBeGreaterThan(0)
      }
      expect(await Promise.all(hosts.map(state))).toEqual(before)
      expect(await Promise.all(agents.map((a) => readFile(a.subnetFile, 'utf8')))).toEqual(
        envBefore,
      )
      expect(agents.map((a) => a.process.exitCode)).toEqual([undefined, undefined, undefined])
      expect(await pingMatrix(hosts, subnets)).toEqual([])
    }, 120_000)

    it('only the leases deleted (config kept): every agent exits as flanneld, the hosts keep reaching each other', async () => {
      const c = cluster!
      const hosts = c.topology.hosts
      const agents = c.agents.map((a) => a!)
      const before = await Promise.all(hosts.map(state))
      await c.etcd.etcdctl('del', '--prefix', `${c.etcdPrefix}/subnets/`)
      const codes = await Promise.all(agents.map((a) => a.process.exited))
      expect(codes).toEqual([0, 0, 0])
      for (const agent of agents) {
        expect(messages(agent.process)).toContain('Lease has been revoked. Shutting down daemon.')
      }
      expect(await Promise.all(hosts.map(state))).toEqual(before)
      expect(await pingMatrix(hosts, subnets)).toEqual([])
    }, 60_000)
  },
)
