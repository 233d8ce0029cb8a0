/**
 * Our Agent (EtcdRegistry + AllocBackend) and real flanneld (alloc) on one
 * etcd (interop.md 2, items 2, 3, 14, 25): what each writes to etcd and to
 * subnet.env has the same form, and a deleted own key stops both (alloc runs
 * no peer watch, in flanneld as in our AllocBackend; peers are covered by
 * registry-etcd's interop test). Skipped with a printed reason when no flanneld
 * binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { filter, firstValueFrom, ReplaySubject, timeout } from 'rxjs'
import {
  Agent,
  LeaseRevokedError,
  formatSubnetEnv,
  parseNetworkConfig,
  subnetEnvValues,
  type AgentEvent,
} from '@flannel/core'
import { encodeLeaseAttrs, subnetKey } from '@flannel/core/registry'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { alloc } from '@flannel/backend-alloc'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  dumpSubnets,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-agent: skipped: ${skipReason}`)

const PREFIX = '/agent/network'
const CONFIG_TEXT = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}'

describe.skipIf(skipReason !== undefined)(
  `Agent and real flanneld on one etcd${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const dev = `${p}b0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let ns: Netns
    let dir: string
    let flanneld: Flanneld
    let flannelSubnet: string
    let registry: EtcdRegistry
    const events = new ReplaySubject<AgentEvent>()
    let failure: unknown
    const stop = new AbortController()

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-agent-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      await client.put(`${PREFIX}/config`).value(CONFIG_TEXT)
      ns = await Netns.create(`${p}-ag`)
      await ns.addBridge(dev, '192.0.2.11/24')
      flanneld = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: PREFIX,
        iface: dev,
        subnetFile: join(dir, 'flanneld.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      flannelSubnet = (await flanneld.waitForLog(ALLOCATED))[1]!
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)

      registry = new EtcdRegistry({ endpoints: etcd.clientUrl, prefix: PREFIX })
      const agent = new Agent({
        registry,
        backends: [alloc()],
        extIface: {
          name: 'eth0',
          index: 2,
          mtu: 1500,
          ifaceAddr: '192.0.2.21',
          extAddr: '192.0.2.21',
        },
        subnetFile: join(dir, 'ours.env'),
      })
      agent.run({ signal: stop.signal }).subscribe({
        next: (e) => events.next(e),
        error: (err: unknown) => {
          failure = err
          events.complete()
        },
        complete: () => events.complete(),
      })
      await firstValueFrom(
        events.pipe(
          filter((e) => e.type === 'ready'),
          timeout(10_000),
        ),
      )
    }, 60_000)

    afterAll(async () => {
      stop.abort()
      await registry?.close()
      await flanneld?.stop()
      await ns?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('both leases are stored in the same form, each on its own 86400 s etcd lease (items 2, 3)', async () => {
      const leases = await dumpSubnets(client, PREFIX)
      expect(leases).toHaveLength(2)
      const byIp = new Map(
        leases.map((l) => [(JSON.parse(l.value) as { PublicIP: string }).PublicIP, l]),
      )
      const theirs = byIp.get('192.0.2.11')!
      const ours = byIp.get('192.0.2.21')!
      expect(theirs.value).toBe(encodeLeaseAttrs({ publicIP: '192.0.2.11' }))
      expect(ours.value).toBe(encodeLeaseAttrs({ publicIP: '192.0.2.21' }))
      expect(theirs.key).toBe(`${PREFIX}/subnets/${flannelSubnet.replace('/', '-')}`)
      expect(ours.grantedTTL).toBe(theirs.grantedTTL)
      expect(ours.grantedTTL).toBe(86400)
      expect(ours.leaseKeys).toEqual([ours.key])
    })

    it('subnet.env files have the same lines for their own leases (item 25)', async () => {
      const ready = await firstValueFrom(events.pipe(filter((e) => e.type === 'ready')))
      if (ready.type !== 'ready') throw new Error('unreachable')
      const config = parseNetworkConfig(CONFIG_TEXT)
      const ours = await readFile(join(dir, 'ours.env'), 'utf8')
      const theirs = await readFile(join(dir, 'flanneld.env'), 'utf8')
      expect(ours).toBe(formatSubnetEnv(subnetEnvValues(config, ready.lease, 1500, false)))
      const keys = (text: string): string[] => text.split('\n').map((l) => l.split('=')[0]!)
      expect(keys(ours)).toEqual(keys(theirs))
      expect(theirs).toContain('FLANNEL_MTU=1500\n')
      expect(ours).toContain('FLANNEL_MTU=1500\n')
      expect(`${PREFIX}/subnets/${subnetKey(ready.lease.subnet)}`).not.toBe(
        `${PREFIX}/subnets/${flannelSubnet.replace('/', '-')}`,
      )
    })

    it('stops with LeaseRevokedError when its own key is deleted, as flanneld exits (item 14)', async () => {
      const ready = await firstValueFrom(events.pipe(filter((e) => e.type === 'ready')))
      if (ready.type !== 'ready') throw new Error('unreachable')
      await client.delete().key(`${PREFIX}/subnets/${subnetKey(ready.lease.subnet)}`)
      const deadline = Date.now() + 10_000
      while (failure === undefined && Date.now() < deadline) {
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(failure).toBeInstanceOf(LeaseRevokedError)
      // flanneld, for comparison
      await client.delete().key(`${PREFIX}/subnets/${flannelSubnet.replace('/', '-')}`)
      expect(await flanneld.waitForExit(5000)).toBe(0)
    })
  },
)
