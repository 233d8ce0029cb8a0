/**
 * Allocation behaviour of real flanneld (interop.md 2, items 6, 7, 8, 9), the
 * facts our registry's acquisition must match: error text of a full network,
 * deletion of an incompatible lease carrying our PublicIP, and simultaneous
 * starts (distinct, aligned, in-range subnets drawn from the lowest 100 free;
 * losers exit with `subnet already exists`). flanneld runs with the alloc
 * backend inside a network namespace. Skipped with a printed reason when no
 * flanneld binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Ip4Net, LeaseConflictError, SubnetExhaustedError, parseNetworkConfig } from '@flannel/core'
import { encodeLeaseAttrs, parseSubnetKey } from '@flannel/core/registry'
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

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-alloc: real flanneld checks skipped: ${skipReason}`)

describe.skipIf(skipReason !== undefined)(
  `allocation by real flanneld${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const dev = `${p}b0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let ns: Netns
    let dir: string
    const running = new Set<Flanneld>()

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-alloc-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      ns = await Netns.create(`${p}-al`)
      await ns.addBridge(dev, '192.0.2.11/24')
    }, 60_000)

    afterAll(async () => {
      for (const f of running) await f.stop()
      await ns?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    function start(prefix: string, name: string, publicIp?: string): Flanneld {
      const f = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: dev,
        subnetFile: join(dir, `${name}.env`),
        ...(publicIp !== undefined ? { publicIp } : {}),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      running.add(f)
      return f
    }

    it('a full network fails with "out of subnets" and exit status 1 (item 7)', async () => {
      const prefix = '/full/network'
      await client
        .put(`${prefix}/config`)
        .value('{"Network":"10.246.0.0/28","Backend":{"Type":"alloc"}}')
      // /28 -> SubnetLen 30, SubnetMin .4, SubnetMax .12: three subnets, all taken
      for (const [i, addr] of ['10.246.0.4', '10.246.0.8', '10.246.0.12'].entries()) {
        await client
          .put(`${prefix}/subnets/${addr}-30`)
          .value(encodeLeaseAttrs({ publicIP: `198.51.100.${i + 1}` }))
      }
      const f = start(prefix, 'full')
      const m = await f.waitForLog(/Error registering network: (.*)$/m)
      expect(m[1]).toBe(`failed to acquire lease: ${new SubnetExhaustedError().message}`)
      expect(await f.waitForExit()).toBe(1)
      running.delete(f)
    })

    it('deletes an incompatible lease carrying its PublicIP and allocates in range (item 9)', async () => {
      const prefix = '/incompatible/network'
      const config = '{"Network":"10.247.0.0/16","Backend":{"Type":"alloc"}}'
      await client.put(`${prefix}/config`).value(config)
      const stale = `${prefix}/subnets/10.99.5.0-24`
      await client.put(stale).value(encodeLeaseAttrs({ publicIP: '192.0.2.11' }))
      const f = start(prefix, 'incompatible')
      await f.waitForLog(
        /Found lease \(.*\) for current IP \(192\.0\.2\.11\) but not compatible with current config, deleting/,
      )
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await f.stop()
      running.delete(f)
      const leases = await dumpSubnets(client, prefix)
      expect(leases.map((l) => l.key)).not.toContain(stale)
      expect(leases).toHaveLength(1)
      const c = parseNetworkConfig(config)
      const subnet = parseSubnetKey(leases[0]!.key)!.subnet
      expect(subnet.prefixLength).toBe(c.subnetLen)
      expect(subnet.ip >= c.subnetMin!.ip && subnet.ip <= c.subnetMax!.ip).toBe(true)
    })

    it('simultaneous starts on a narrow range end with distinct, aligned, in-range subnets; losers exit with "subnet already exists" (items 6, 8)', async () => {
      const prefix = '/race/network'
      const config =
        '{"Network":"10.248.0.0/16","SubnetMin":"10.248.10.0","SubnetMax":"10.248.41.0","Backend":{"Type":"alloc"}}'
      await client.put(`${prefix}/config`).value(config)
      // 30 hosts, 32 subnets: simultaneous random picks collide
      const hosts = Array.from({ length: 30 }, (_, i) => `198.51.100.${i + 1}`)
      let conflicts = 0
      let pending = hosts
      // a supervisor's role: start again whoever lost a race
      for (let round = 0; round < 8 && pending.length > 0; round++) {
        const procs = pending.map((ip) => [ip, start(prefix, `race-${ip}`, ip)] as const)
        const lost: string[] = []
        await Promise.all(
          procs.map(async ([ip, f]) => {
            const m = await f.waitForLog(/Wrote subnet file to |Error registering network: (.*)$/m)
            if (m[1] !== undefined) {
              expect(m[1]).toBe(`failed to acquire lease: ${new LeaseConflictError().message}`)
              expect(await f.waitForExit()).toBe(1)
              conflicts++
              lost.push(ip)
            }
            await f.stop()
            running.delete(f)
          }),
        )
        pending = lost
      }
      console.info(
        `flanneld race: ${hosts.length} hosts, ${conflicts} lost a race and were restarted`,
      )
      expect(pending).toEqual([])
      const leases = await dumpSubnets(client, prefix)
      expect(leases).toHaveLength(hosts.length)
      const c = parseNetworkConfig(config)
      const size = 2 ** (32 - c.subnetLen)
      const subnets = leases.map((l) => parseSubnetKey(l.key)!.subnet)
      expect(new Set(subnets.map((s) => s.toString())).size).toBe(hosts.length)
      for (const s of subnets) {
        expect(s.prefixLength).toBe(c.subnetLen)
        expect(s.ip % size).toBe(0)
        expect(s.ip >= c.subnetMin!.ip && s.ip <= c.subnetMax!.ip).toBe(true)
      }
      expect(subnets.every((s) => s instanceof Ip4Net)).toBe(true)
      const publicIps = leases.map((l) => (JSON.parse(l.value) as { PublicIP: string }).PublicIP)
      expect(publicIps.sort()).toEqual([...hosts].sort())
    }, 60_000)
  },
)
