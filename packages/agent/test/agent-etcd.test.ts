/**
 * core's Agent with the alloc backend on a real etcd (EtcdRegistry): lease
 * bytes, renewal before a short TTL runs out, previous subnet reuse, and
 * revocation. Skipped with the reason when etcd is missing.
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { firstValueFrom, filter, lastValueFrom, take, toArray } from 'rxjs'
import { Agent, isFlannelError, type AgentEvent, type ExternalInterface } from '@flannel/core'
import { alloc } from '@flannel/backend-alloc'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'

const reason = etcdMissingReason()
if (reason) console.warn(`Agent on etcd tests skipped: ${reason}`)

const ext: ExternalInterface = { name: 'eth0', index: 2, mtu: 1500, extAddr: '192.0.2.10' }

describe.skipIf(reason)(
  `Agent + AllocBackend on etcd${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let etcd: EtcdServer
    let dir: string
    beforeAll(async () => {
      etcd = await startEtcd()
      dir = await mkdtemp(join(tmpdir(), 'flae-'))
      await etcd.etcdctl(
        'put',
        '/coreos.com/network/config',
        '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}',
      )
    }, 30_000)
    afterAll(async () => {
      await etcd?.stop()
      await rm(dir, { recursive: true, force: true })
    })

    it('publishes flanneld bytes and renews before a short TTL runs out', async () => {
      const registry = new EtcdRegistry({ endpoints: etcd.endpoints, leaseTtlSeconds: 4 })
      try {
        const agent = new Agent({
          registry,
          backends: [alloc()],
          extIface: ext,
          subnetFile: join(dir, 'a.env'),
          renewMarginMs: 2500,
        })
        const events: AgentEvent[] = await lastValueFrom(
          agent.run().pipe(
            filter((e) => e.type === 'ready' || e.type === 'renewed'),
            take(3),
            toArray(),
          ),
        )
        expect(events.map((e) => e.type)).toEqual(['ready', 'renewed', 'renewed'])
        const key = `/coreos.com/network/subnets/${agent.lease!.subnet.toKey()}`
        // two renewals of a 4 s lease: the key outlived its first TTL
        expect(await etcd.etcdctl('get', '--print-value-only', key)).toBe(
          '{"PublicIP":"192.0.2.10","PublicIPv6":null}\n',
        )
      } finally {
        await registry.close()
      }
    }, 30_000)

    it('a restarted agent gets its subnet back; deleting it ends the agent with LeaseRevokedError', async () => {
      const file = join(dir, 'b.env')
      const first = new EtcdRegistry({ endpoints: etcd.endpoints })
      const agentA = new Agent({
        registry: first,
        backends: [alloc()],
        extIface: { ...ext, extAddr: '192.0.2.20' },
        subnetFile: file,
      })
      await firstValueFrom(agentA.run().pipe(filter((e) => e.type === 'ready')))
      const subnet = agentA.lease!.subnet.toString()
      await first.close()
      // another address: only subnet.env links the two runs
      const second = new EtcdRegistry({ endpoints: etcd.endpoints })
      try {
        await etcd.etcdctl('del', `/coreos.com/network/subnets/${agentA.lease!.subnet.toKey()}`)
        const agentB = new Agent({
          registry: second,
          backends: [alloc()],
          extIface: { ...ext, extAddr: '192.0.2.21' },
          subnetFile: file,
        })
        let got: string | undefined
        const ended = new Promise<unknown>((resolve) => {
          agentB.run().subscribe({
            next: (e) => {
              if (e.type === 'ready') {
                got = e.lease.subnet.toString()
                void etcd.etcdctl('del', `/coreos.com/network/subnets/${e.lease.subnet.toKey()}`)
              }
            },
            error: resolve,
          })
        })
        const error = await ended
        expect(got).toBe(subnet)
        expect(isFlannelError(error, 'LEASE_REVOKED')).toBe(true)
        expect(agentB.status).toBe('failed')
      } finally {
        await second.close()
      }
    }, 30_000)
  },
)
