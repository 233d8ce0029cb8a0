/**
 * EtcdRegistry against a three-member etcd cluster, given all three
 * endpoints, as a production agent is: whichever member goes down (a
 * follower, the leader, then the last one), calls keep succeeding on the others, the watch
 * keeps delivering every real change and invents none, and a restarted member
 * rejoins. Skipped with the reason when etcd is not installed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Subscription } from 'rxjs'
import type { Lease, LeaseEvent } from '@flannel/core'
import { etcdMissingReason, startEtcdCluster, type EtcdCluster } from '@flannel/testkit/etcd'
import { EtcdRegistry } from '@flannel/registry-etcd'

const missing = etcdMissingReason()
if (missing) console.warn(`EtcdRegistry cluster tests skipped: ${missing}`)

const PREFIX = '/cluster/network'
const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"host-gw"}}'

async function until<T>(fn: () => T | undefined | false, what: string, ms = 20_000): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(missing !== undefined)(
  `EtcdRegistry on a three-member etcd cluster${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let cluster: EtcdCluster
    let registry: EtcdRegistry
    let peers: EtcdRegistry
    let sub: Subscription | undefined
    const batches: LeaseEvent[][] = []

    beforeAll(async () => {
      cluster = await startEtcdCluster({ members: 3 })
      await cluster.connect().put(`${PREFIX}/config`).value(CONFIG)
      const options = {
        endpoints: cluster.endpoints,
        prefix: PREFIX,
        // room for an election (250 ms timeout here) and a dead member's dial timeouts
        requestTimeoutMs: 10_000,
        dialTimeoutMs: 1_000,
      }
      registry = new EtcdRegistry(options)
      peers = new EtcdRegistry(options)
      sub = registry.watchLeases().subscribe((b) => batches.push(b))
      await until(() => batches.length > 0, 'the first batch')
    }, 90_000)

    afterAll(async () => {
      sub?.unsubscribe()
      await registry?.close()
      await peers?.close()
      await cluster?.stop()
    })

    const added = (subnet: string) =>
      batches.flat().some((e) => e.type === 'added' && e.lease.subnet.toString() === subnet)
    const removed = () => batches.flat().filter((e) => e.type === 'removed')

    /** With member `index` down: our renewal, a peer's new lease and a peer's release all go through. */
    async function survives(index: number, own: Lease): Promise<Lease> {
      await cluster.members[index]!.kill()
      try {
        const renewed = await registry.renewLease(own)
        expect(renewed.subnet.toString()).toBe(own.subnet.toString())
        const peer = await peers.acquireLease({ publicIP: `192.0.2.${100 + index}` })
        await until(() => added(peer.subnet.toString()), `peer ${peer.subnet.toString()} added`)
        const before = removed().length
        await peers.releaseLease(peer)
        await until(() => removed().length > before, `peer ${peer.subnet.toString()} removed`)
        expect(
          removed()
            .slice(before)
            .map((e) => e.lease.subnet.toString()),
        ).toEqual([peer.subnet.toString()])
        return renewed
      } finally {
        await cluster.members[index]!.restart()
      }
    }

    it('keeps working with each member down in turn (a follower, the leader, the last one); invents no removals', async () => {
      let own = await registry.acquireLease({ publicIP: '192.0.2.11' })
      const leader = await cluster.leader()
      const follower = (leader + 1) % 3
      const last = 3 - leader - follower
      for (const index of [follower, leader, last]) own = await survives(index, own)
      // every removal seen was a peer's release; our own lease is still there
      expect(
        removed()
          .map((e) => e.lease.attrs.publicIP)
          .sort(),
      ).toEqual([follower, leader, last].map((i) => `192.0.2.${100 + i}`).sort())
      const listing = await cluster.connect().getAll().prefix(`${PREFIX}/subnets/`).keys()
      expect(listing).toEqual([`${PREFIX}/subnets/${own.subnet.toString().replace('/', '-')}`])
    }, 120_000)
  },
)
