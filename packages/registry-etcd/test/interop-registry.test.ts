/**
 * EtcdRegistry and real flanneld sharing one etcd (interop.md 2, items 2, 3,
 * 4, 8, 10, 16). Runs when both a flanneld binary and the `EtcdRegistry`
 * export are available; otherwise skipped with the reason printed.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { type LeaseAttrs, type LeaseEvent, type SubnetRegistry } from '@flannel/core'
import { encodeLeaseAttrs, parseSubnetKey, subnetKey } from '@flannel/core/registry'
import {
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  dumpSubnets,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'

type RegistryCtor = new (options: { endpoints: string; prefix?: string }) => SubnetRegistry

const registryModule = (await import('@flannel/registry-etcd')) as unknown as Record<
  string,
  unknown
>
const EtcdRegistry = registryModule.EtcdRegistry as RegistryCtor | undefined
const skipReason =
  interopSkipReason() ??
  (typeof EtcdRegistry === 'function'
    ? undefined
    : 'EtcdRegistry is not exported by @flannel/registry-etcd yet')
if (skipReason) console.warn(`interop-registry: skipped: ${skipReason}`)

const NETWORK_CONFIG = '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}'

describe.skipIf(skipReason !== undefined)(
  `EtcdRegistry with real flanneld${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const dev = `${p}b0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let ns: Netns
    let dir: string
    const registries: SubnetRegistry[] = []

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-registry-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      ns = await Netns.create(`${p}-rg`)
      await ns.addBridge(dev, '192.0.2.11/24')
    }, 60_000)

    afterAll(async () => {
      for (const r of registries) await r.close().catch(() => undefined)
      await ns?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    async function setup(name: string, config = NETWORK_CONFIG): Promise<string> {
      const prefix = `/${name}/network`
      await client.put(`${prefix}/config`).value(config)
      return prefix
    }

    function registry(prefix: string): SubnetRegistry {
      const r = new EtcdRegistry!({ endpoints: etcd.clientUrl, prefix })
      registries.push(r)
      return r
    }

    async function runFlanneld(prefix: string, name: string, publicIp?: string): Promise<string> {
      const f = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: dev,
        subnetFile: join(dir, `${name}.env`),
        ...(publicIp !== undefined ? { publicIp } : {}),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      try {
        await f.waitForLog(SUBNET_FILE_WRITTEN)
        return f.log
      } finally {
        await f.stop()
      }
    }

    it('writes flanneld key and value bytes on a fresh 86400 s etcd lease; renew grants a new one (items 2, 3)', async () => {
      const prefix = await setup('rg-bytes')
      const attrs: LeaseAttrs = { publicIP: '192.0.2.21', backendType: 'host-gw' }
      const lease = await registry(prefix).acquireLease(attrs)
      const [stored, ...more] = await dumpSubnets(client, prefix)
      expect(more).toEqual([])
      expect(stored!.key).toBe(`${prefix}/subnets/${subnetKey(lease.subnet)}`)
      expect(stored!.value).toBe(
        '{"PublicIP":"192.0.2.21","PublicIPv6":null,"BackendType":"host-gw"}',
      )
      expect(stored!.grantedTTL).toBe(86400)
      expect(stored!.leaseKeys).toEqual([stored!.key])
      await registry(prefix).renewLease(lease)
      const [renewed] = await dumpSubnets(client, prefix)
      expect(renewed!.value).toBe(stored!.value)
      expect(renewed!.leaseId).not.toBe(stored!.leaseId)
      expect(renewed!.grantedTTL).toBe(86400)
    })

    it('flanneld reuses the lease our registry wrote for its PublicIP (item 4)', async () => {
      const prefix = await setup('rg-ts-first')
      const ours = await registry(prefix).acquireLease({ publicIP: '192.0.2.11' })
      const log = await runFlanneld(prefix, 'ts-first')
      expect(log).toContain(`Found lease (ip: ${ours.subnet.toString()} `)
      const leases = await dumpSubnets(client, prefix)
      expect(leases.map((l) => l.key)).toEqual([`${prefix}/subnets/${subnetKey(ours.subnet)}`])
    })

    it("our registry reuses flanneld's lease for the same PublicIP (item 4)", async () => {
      const prefix = await setup('rg-flanneld-first')
      await runFlanneld(prefix, 'flanneld-first')
      const [theirs] = await dumpSubnets(client, prefix)
      const ours = await registry(prefix).acquireLease({ publicIP: '192.0.2.11' })
      expect(`${prefix}/subnets/${subnetKey(ours.subnet)}`).toBe(theirs!.key)
      const [after] = await dumpSubnets(client, prefix)
      expect(after!.grantedTTL).toBe(86400)
    })

    it('reuses a reservation and attaches a 86400 s lease to it, as flanneld does (item 10)', async () => {
      const prefix = await setup('rg-reservation')
      const key = `${prefix}/subnets/10.244.77.0-24`
      await client.put(key).value(encodeLeaseAttrs({ publicIP: '192.0.2.31' }))
      const lease = await registry(prefix).acquireLease({ publicIP: '192.0.2.31' })
      expect(lease.subnet.toString()).toBe('10.244.77.0/24')
      const [after] = await dumpSubnets(client, prefix)
      expect(after!.key).toBe(key)
      expect(after!.grantedTTL).toBe(86400)
    })

    it("sees flanneld's lease in its watch and keeps peers through garbage keys (items 11, 16)", async () => {
      const prefix = await setup('rg-watch')
      await runFlanneld(prefix, 'watch')
      const [theirs] = await dumpSubnets(client, prefix)
      const r = registry(prefix)
      const events: LeaseEvent[] = []
      const sub = r.watchLeases().subscribe((batch) => events.push(...batch))
      try {
        const deadline = Date.now() + 5000
        while (events.length === 0 && Date.now() < deadline) {
          await new Promise((res) => setTimeout(res, 50))
        }
        expect(events.map((e) => [e.type, e.lease.subnet.toString()])).toEqual([
          ['added', parseSubnetKey(theirs!.key)!.subnet.toString()],
        ])
        expect(events[0]!.lease.attrs).toEqual({ publicIP: '192.0.2.11' })
        await client.put(`${prefix}/subnets/garbage`).value('not json')
        await client.put(`${prefix}/subnets/10.244.201.0-24`).value('not json')
        await new Promise((res) => setTimeout(res, 1000))
        expect(events.filter((e) => e.type === 'removed')).toEqual([])
      } finally {
        sub.unsubscribe()
      }
    })

    it('simultaneous starts of flanneld and our registry end with distinct subnets; ours never fail (item 8)', async () => {
      const prefix = await setup(
        'rg-race',
        '{"Network":"10.248.0.0/16","SubnetMin":"10.248.10.0","SubnetMax":"10.248.41.0","Backend":{"Type":"alloc"}}',
      )
      const flanneldHosts = Array.from({ length: 10 }, (_, i) => `198.51.100.${i + 1}`)
      const ourHosts = Array.from({ length: 10 }, (_, i) => `198.51.100.${i + 101}`)
      const flanneldRuns = flanneldHosts.map(async (ip) => {
        // a supervisor's role: flanneld exits on a conflict and is started again
        for (let attempt = 0; attempt < 8; attempt++) {
          // a failed run's error text quotes the awaited pattern: count it as no log at all
          const log = await runFlanneld(prefix, `race-${ip}`, ip).catch(() => '')
          if (log.includes('Wrote subnet file')) return
        }
        throw new Error(`flanneld for ${ip} never got a lease`)
      })
      const ourRuns = ourHosts.map((ip) => registry(prefix).acquireLease({ publicIP: ip }))
      await Promise.all([...flanneldRuns, ...ourRuns])
      const leases = await dumpSubnets(client, prefix)
      expect(leases).toHaveLength(20)
      expect(new Set(leases.map((l) => l.key)).size).toBe(20)
    }, 60_000)
  },
)
