/**
 * Lease bytes, TTL pattern, reuse, reservations and subnet.env against real
 * flanneld (interop.md 2, items 2, 3, 4, 5, 10, 25), compared with core's
 * `subnetKey`, `encodeLeaseAttrs`/`decodeLeaseAttrs` and `formatSubnetEnv`/
 * `writeSubnetEnv`. flanneld runs in network namespace A (192.0.2.11), joined
 * by a veth pair to namespace B (192.0.2.12); etcd is private to the test.
 * Skipped with a printed reason when no flanneld binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  Ip4Net,
  Ip6Net,
  formatSubnetEnv,
  parseNetworkConfig,
  readSubnetEnv,
  subnetEnvValues,
  writeSubnetEnv,
  type Lease,
} from '@flannel/core'
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  parseSubnetKey,
  subnetKey,
} from '@flannel/core/registry'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  dumpSubnets,
  interopSkipReason,
  linkNamespaces,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-lease: real flanneld checks skipped: ${skipReason}`)

const NETWORK = '10.244.0.0/16'
const PUBLIC_IP = '192.0.2.11'

describe.skipIf(skipReason !== undefined)(
  `lease bytes and subnet.env vs real flanneld${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const devA = `${p}a0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let a: Netns
    let b: Netns
    let dir: string
    const running = new Set<Flanneld>()

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-lease-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      a = await Netns.create(`${p}-a`)
      b = await Netns.create(`${p}-b`)
      await linkNamespaces(
        { ns: a, dev: devA, cidr: `${PUBLIC_IP}/24` },
        { ns: b, dev: `${p}b0`, cidr: '192.0.2.12/24' },
      )
      await a.ip('addr', 'add', '2001:db8::11/64', 'dev', devA, 'nodad')
      await b.ip('addr', 'add', '2001:db8::12/64', 'dev', `${p}b0`, 'nodad')
    }, 60_000)

    afterAll(async () => {
      for (const f of running) await f.stop()
      await a?.destroy()
      await b?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    function start(prefix: string, subnetFile: string, extra: string[] = []): Flanneld {
      const f = Flanneld.start({
        netns: a,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: devA,
        subnetFile,
        extraArgs: ['--iptables-forward-rules=false', ...extra],
      })
      running.add(f)
      return f
    }

    async function stop(f: Flanneld): Promise<void> {
      await f.stop()
      running.delete(f)
    }

    async function vtepMac(dev = 'flannel.1'): Promise<string> {
      const links = JSON.parse(await a.ip('-j', 'link', 'show', dev)) as {
        address: string
      }[]
      return links[0]!.address
    }

    it.each([
      ['alloc', 1500],
      ['host-gw', 1500],
      ['udp', 1472],
      ['vxlan', 1450],
    ] as const)(
      '%s: key, value bytes, 86400 s lease and subnet.env equal what core produces',
      async (type, mtu) => {
        const prefix = `/bytes-${type}/network`
        const configText = `{"Network":"${NETWORK}","Backend":{"Type":"${type}"}}`
        await client.put(`${prefix}/config`).value(configText)
        const subnetFile = join(dir, `${type}.env`)
        const f = start(prefix, subnetFile)
        const allocated = await f.waitForLog(ALLOCATED)
        await f.waitForLog(SUBNET_FILE_WRITTEN)
        const [stored, ...more] = await dumpSubnets(client, prefix)
        expect(more).toEqual([])

        // key (item 2)
        const subnet = Ip4Net.parse(allocated[1]!)
        expect(stored!.key).toBe(`${prefix}/subnets/${subnetKey(subnet)}`)
        expect(parseSubnetKey(stored!.key)?.subnet.toString()).toBe(subnet.toString())

        // value bytes (item 2, 7, 8)
        const attrs =
          type === 'vxlan'
            ? {
                publicIP: PUBLIC_IP,
                backendType: 'vxlan',
                backendData: { VNI: 1, VtepMAC: await vtepMac() },
              }
            : type === 'host-gw'
              ? { publicIP: PUBLIC_IP, backendType: 'host-gw' }
              : { publicIP: PUBLIC_IP }
        expect(stored!.value).toBe(encodeLeaseAttrs(attrs))
        expect(encodeLeaseAttrs(decodeLeaseAttrs(stored!.value))).toBe(stored!.value)
        console.info(`flanneld ${type}: ${stored!.key} = ${stored!.value}`)

        // TTL pattern (item 3)
        expect(stored!.grantedTTL).toBe(86400)
        expect(stored!.leaseKeys).toEqual([stored!.key])

        // subnet.env (item 25): text, then our atomic writer's bytes and mode
        const theirs = await readFile(subnetFile, 'utf8')
        const lease: Lease = { subnet, attrs, expiration: new Date() }
        const values = subnetEnvValues(parseNetworkConfig(configText), lease, mtu, false)
        expect(theirs).toBe(formatSubnetEnv(values))
        const ourFile = join(dir, `ours-${type}.env`)
        await writeSubnetEnv(ourFile, values)
        expect(await readFile(ourFile, 'utf8')).toBe(theirs)
        expect((await stat(ourFile)).mode & 0o777).toBe((await stat(subnetFile)).mode & 0o777)
        // and our reader takes flanneld's file as the previous subnet
        expect((await readSubnetEnv(subnetFile)).subnet?.toString()).toBe(subnet.toString())
        console.info(`flanneld ${type} subnet.env:\n${theirs}`)
        await stop(f)
      },
    )

    it('dual-stack vxlan: key with IPv6 part, PublicIPv6 and BackendV6Data bytes, IPv6 subnet.env lines (items 2, 22, 25)', async () => {
      const prefix = '/bytes-dual/network'
      const configText =
        '{"Network":"10.245.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"vxlan","VNI":7}}'
      await client.put(`${prefix}/config`).value(configText)
      const subnetFile = join(dir, 'dual.env')
      const f = start(prefix, subnetFile)
      const allocated = await f.waitForLog(ALLOCATED)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      const [stored] = await dumpSubnets(client, prefix)
      const subnet = Ip4Net.parse(allocated[1]!)
      const ipv6Subnet = Ip6Net.parse(allocated[2]!)
      expect(stored!.key).toBe(`${prefix}/subnets/${subnetKey(subnet, ipv6Subnet)}`)
      const parsed = parseSubnetKey(stored!.key)
      expect(parsed?.ipv6Subnet?.toString()).toBe(ipv6Subnet.toString())
      const attrs = {
        publicIP: PUBLIC_IP,
        publicIPv6: '2001:db8::11',
        backendType: 'vxlan',
        backendData: { VNI: 7, VtepMAC: await vtepMac('flannel.7') },
        backendV6Data: { VNI: 7, VtepMAC: await vtepMac('flannel-v6.7') },
      }
      expect(stored!.value).toBe(encodeLeaseAttrs(attrs))
      expect(encodeLeaseAttrs(decodeLeaseAttrs(stored!.value))).toBe(stored!.value)
      console.info(`flanneld dual-stack vxlan: ${stored!.key} = ${stored!.value}`)
      const theirs = await readFile(subnetFile, 'utf8')
      const lease: Lease = { subnet, ipv6Subnet, attrs, expiration: new Date() }
      expect(theirs).toBe(
        formatSubnetEnv(subnetEnvValues(parseNetworkConfig(configText), lease, 1450, false)),
      )
      const previous = await readSubnetEnv(subnetFile)
      expect(previous.subnet?.toString()).toBe(subnet.toString())
      expect(previous.ipv6Subnet?.toString()).toBe(ipv6Subnet.toString())
      console.info(`flanneld dual-stack subnet.env:\n${theirs}`)
      await stop(f)
    })

    it('dual-stack alloc: flanneld publishes PublicIPv6 null (item 2)', async () => {
      const prefix = '/bytes-dual-alloc/network'
      await client
        .put(`${prefix}/config`)
        .value(
          '{"Network":"10.245.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:245::/56","Backend":{"Type":"alloc"}}',
        )
      const f = start(prefix, join(dir, 'dual-alloc.env'))
      const allocated = await f.waitForLog(ALLOCATED)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      const [stored] = await dumpSubnets(client, prefix)
      expect(stored!.key).toBe(
        `${prefix}/subnets/${subnetKey(Ip4Net.parse(allocated[1]!), Ip6Net.parse(allocated[2]!))}`,
      )
      // flanneld's alloc backend publishes only PublicIP, even in dual-stack mode
      expect(stored!.value).toBe(encodeLeaseAttrs({ publicIP: PUBLIC_IP }))
      console.info(`flanneld dual-stack alloc: ${stored!.key} = ${stored!.value}`)
    })

    it('dual-stack host-gw: PublicIPv6 published (item 2)', async () => {
      const prefix = '/bytes-dual-hostgw/network'
      await client
        .put(`${prefix}/config`)
        .value(
          '{"Network":"10.245.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:246::/56","Backend":{"Type":"host-gw"}}',
        )
      const f = start(prefix, join(dir, 'dual-hostgw.env'))
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      const [stored] = await dumpSubnets(client, prefix)
      expect(stored!.value).toBe(
        encodeLeaseAttrs({
          publicIP: PUBLIC_IP,
          publicIPv6: '2001:db8::11',
          backendType: 'host-gw',
        }),
      )
    })

    it('--ip-masq=true: FLANNEL_IPMASQ=true in subnet.env (item 25)', async () => {
      const prefix = '/masq/network'
      const configText = `{"Network":"${NETWORK}","Backend":{"Type":"alloc"}}`
      await client.put(`${prefix}/config`).value(configText)
      const subnetFile = join(dir, 'masq.env')
      const f = Flanneld.start({
        netns: a,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: devA,
        subnetFile,
        ipMasq: true,
      })
      running.add(f)
      const allocated = await f.waitForLog(ALLOCATED)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      const lease: Lease = {
        subnet: Ip4Net.parse(allocated[1]!),
        attrs: { publicIP: PUBLIC_IP },
        expiration: new Date(),
      }
      expect(await readFile(subnetFile, 'utf8')).toBe(
        formatSubnetEnv(subnetEnvValues(parseNetworkConfig(configText), lease, 1500, true)),
      )
    })

    it('restart reuses the lease by PublicIP with a fresh 86400 s etcd lease; the old one is not revoked (items 3, 4)', async () => {
      const prefix = '/reuse/network'
      await client
        .put(`${prefix}/config`)
        .value(`{"Network":"${NETWORK}","Backend":{"Type":"alloc"}}`)
      const file = join(dir, 'reuse.env')
      const first = start(prefix, file)
      await first.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(first)
      const [before] = await dumpSubnets(client, prefix)
      await rm(file) // no previous subnet: only reuse by PublicIP can keep the subnet
      const second = start(prefix, file)
      await second.waitForLog(
        /Found lease \(ip: \S+ ipv6: \S+\) for current IP \(192\.0\.2\.11\), reusing/,
      )
      await second.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(second)
      const [after] = await dumpSubnets(client, prefix)
      expect(after!.key).toBe(before!.key)
      expect(after!.value).toBe(before!.value)
      expect(after!.leaseId).not.toBe(before!.leaseId)
      expect(after!.grantedTTL).toBe(86400)
      const old = await client.leaseClient.leaseTimeToLive({ ID: before!.leaseId, keys: true })
      expect(Number(old.TTL)).toBeGreaterThan(0) // still alive, with no keys
      expect(old.keys).toEqual([])
    })

    it('takes the previous subnet from subnet.env after its key was deleted (item 5)', async () => {
      const prefix = '/previous/network'
      await client
        .put(`${prefix}/config`)
        .value(`{"Network":"${NETWORK}","Backend":{"Type":"alloc"}}`)
      const file = join(dir, 'previous.env')
      const first = start(prefix, file)
      await first.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(first)
      const [before] = await dumpSubnets(client, prefix)
      await client.delete().key(before!.key)
      const second = start(prefix, file)
      await second.waitForLog(/Found previously leased subnet \(\S+\), reusing/)
      await second.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(second)
      const [after] = await dumpSubnets(client, prefix)
      expect(after!.key).toBe(before!.key)
    })

    it('ignores a previous subnet another host holds and allocates a new one (item 5)', async () => {
      const prefix = '/previous-taken/network'
      await client
        .put(`${prefix}/config`)
        .value(`{"Network":"${NETWORK}","Backend":{"Type":"alloc"}}`)
      const file = join(dir, 'previous-taken.env')
      await writeSubnetEnv(file, {
        network: Ip4Net.parse(NETWORK),
        subnet: Ip4Net.parse('10.244.55.0/24'),
        mtu: 1500,
        ipMasq: false,
      })
      const taken = `${prefix}/subnets/10.244.55.0-24`
      await client.put(taken).value(encodeLeaseAttrs({ publicIP: '198.51.100.55' }))
      const f = start(prefix, file)
      const allocated = await f.waitForLog(ALLOCATED)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      expect(allocated[1]).not.toBe('10.244.55.0/24')
      const keys = (await dumpSubnets(client, prefix)).map((l) => l.key)
      expect(keys).toContain(taken)
      expect(keys).toHaveLength(2)
    })

    it('reuses a lease written in our format with a 86400 s etcd lease for its PublicIP (item 4)', async () => {
      const prefix = '/ours-first/network'
      await client
        .put(`${prefix}/config`)
        .value(`{"Network":"${NETWORK}","Backend":{"Type":"host-gw"}}`)
      const key = `${prefix}/subnets/${subnetKey(Ip4Net.parse('10.244.123.0/24'))}`
      const value = encodeLeaseAttrs({ publicIP: PUBLIC_IP, backendType: 'host-gw' })
      const lease = client.lease(86400, { autoKeepAlive: false })
      await lease.put(key).value(value)
      const f = start(prefix, join(dir, 'ours-first.env'))
      await f.waitForLog(
        /Found lease \(ip: 10\.244\.123\.0\/24 ipv6: \S+\) for current IP \(192\.0\.2\.11\), reusing/,
      )
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      const [after, ...more] = await dumpSubnets(client, prefix)
      expect(more).toEqual([])
      expect(after!.key).toBe(key)
      expect(after!.value).toBe(value)
      expect(after!.leaseId).not.toBe(await lease.grant())
      expect(after!.grantedTTL).toBe(86400)
    })

    it('reuses a reservation (key without etcd lease) and turns it into a 86400 s lease (item 10)', async () => {
      const prefix = '/reservation/network'
      await client
        .put(`${prefix}/config`)
        .value(`{"Network":"${NETWORK}","Backend":{"Type":"alloc"}}`)
      const key = `${prefix}/subnets/10.244.77.0-24`
      await client.put(key).value(encodeLeaseAttrs({ publicIP: PUBLIC_IP }))
      const f = start(prefix, join(dir, 'reservation.env'))
      await f.waitForLog(/Found lease \(ip: 10\.244\.77\.0\/24 ipv6: \S+\) for current IP/)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      await stop(f)
      const [after, ...more] = await dumpSubnets(client, prefix)
      expect(more).toEqual([])
      expect(after!.key).toBe(key)
      expect(after!.leaseId).not.toBe('0')
      expect(after!.grantedTTL).toBe(86400)
    })
  },
)
