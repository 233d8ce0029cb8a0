/**
 * Three hosts as network namespaces, etcd in the switch namespace, one
 * `flannel-agent` process per host started with flanneld's flags, for the
 * vxlan, host-gw, alloc and udp backends: leases in etcd, subnet.env, pings
 * and TCP between the hosts' pod addresses, a leaving host's entries removed
 * on the others, and hand-deleted kernel state repaired. For udp also the
 * wire (raw inner IPv4 as the whole UDP payload, captured on the underlay),
 * the inner TTL, ICMP net-unreachable and a non-peer's datagram dropped and
 * counted in /metrics.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  netnsSkipReason,
  nsExec,
  pingMatrix,
  podAddress,
  tcpMatrix,
  readFdb,
  readLinks,
  readNeighbours,
  readRoutes,
  startCluster,
  sweepStaleNamespaces,
  waitUntil,
  type Cluster,
} from '@flannel/testkit/netns'

const skip = (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`multi-host e2e skipped: ${skip}`)
else await sweepStaleNamespaces()

const NETWORK = '10.244.0.0/16'

async function bringUp(cluster: Cluster): Promise<string[]> {
  cluster.topology.hosts.forEach((_, i) => cluster.startAgent(i))
  const subnets: string[] = []
  for (let i = 0; i < cluster.topology.hosts.length; i++) {
    // FLANNEL_SUBNET is the subnet's first address with its prefix (`10.244.7.1/24`).
    const env = await cluster.waitForSubnetEnv(i)
    const [addr, len] = env.FLANNEL_SUBNET!.split('/')
    subnets.push(`${addr!.replace(/\.\d+$/, '.0')}/${len}`)
  }
  return subnets
}

const UDP_PORT = 8285
const HEALTHZ_PORT = 18471

/**
 * Captures on `dev` in `host` (tcpdump -w to a temp file) while `action`
 * runs; returns the captured frames (link headers as written) and the
 * action's output.
 */
async function capture(
  host: Cluster['topology']['hosts'][number],
  dev: string,
  filter: readonly string[],
  action: () => Promise<string>,
): Promise<{ packets: Buffer[]; output: string }> {
  const dir = await mkdtemp(join(tmpdir(), 'flannel-pcap-'))
  const file = join(dir, 'capture.pcap')
  const dump = host.spawn('tcpdump', [
    '-i',
    dev,
    '--immediate-mode',
    '-U',
    '-n',
    '-w',
    file,
    ...filter,
  ])
  try {
    await dump.waitFor(/listening on/)
    const output = await action()
    // Immediate mode hands each packet over at once; SIGINT makes tcpdump write what it holds.
    await new Promise((r) => setTimeout(r, 200))
    await dump.stop('SIGINT')
    return { packets: pcapPackets(await readFile(file)), output }
  } finally {
    await dump.stop('SIGKILL')
    await rm(dir, { recursive: true, force: true })
  }
}

/** The packets of a classic pcap file, each from its IPv4 header (Ethernet and raw links). */
function pcapPackets(file: Buffer): Buffer[] {
  const le = file.readUInt32LE(0) === 0xa1b2c3d4 || file.readUInt32LE(0) === 0xa1b23c4d
  const u32 = (off: number) => (le ? file.readUInt32LE(off) : file.readUInt32BE(off))
  const linkType = u32(20)
  const linkHeader = linkType === 1 ? 14 : 0 // Ethernet, else raw IP (TUN)
  const out: Buffer[] = []
  for (let off = 24; off + 16 <= file.length; ) {
    const caplen = u32(off + 8)
    const frame = file.subarray(off + 16, off + 16 + caplen)
    if (linkType !== 1 || frame.readUInt16BE(12) === 0x0800) out.push(frame.subarray(linkHeader))
    off += 16 + caplen
  }
  return out
}

/** The fields of an IPv4 header the tests look at. */
function ipv4Header(p: Buffer): {
  ihl: number
  totalLength: number
  ttl: number
  protocol: number
  src: string
  dst: string
} {
  return {
    ihl: (p[0]! & 0x0f) * 4,
    totalLength: p.readUInt16BE(2),
    ttl: p[8]!,
    protocol: p[9]!,
    src: [...p.subarray(12, 16)].join('.'),
    dst: [...p.subarray(16, 20)].join('.'),
  }
}

/** The UDP payload of an outer IPv4/UDP packet to or from the udp backend's port. */
function udpPayload(p: Buffer): Buffer | undefined {
  const outer = ipv4Header(p)
  if (outer.protocol !== 17) return undefined
  const udp = p.subarray(outer.ihl)
  if (udp.readUInt16BE(0) !== UDP_PORT && udp.readUInt16BE(2) !== UDP_PORT) return undefined
  return udp.subarray(8, udp.readUInt16BE(4))
}

describe.skipIf(skip !== undefined)(
  `multi-host e2e: vxlan${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        config: JSON.stringify({ Network: NETWORK, Backend: { Type: 'vxlan' } }),
      })
      subnets = await bringUp(cluster)
      for (const [i, host] of cluster.topology.hosts.entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('writes three vxlan leases to etcd and a subnet.env per host', async () => {
      const leases = await cluster!.leases()
      expect(leases).toHaveLength(3)
      for (const [i, host] of cluster!.topology.hosts.entries()) {
        const lease = leases.find((l) => l.key.endsWith(subnets[i]!.replace('/', '-')))
        expect(lease, `lease of ${host.ns}`).toBeDefined()
        expect(lease!.value).toMatch(
          new RegExp(
            `^\\{"PublicIP":"${host.underlayIp.replace(/\./g, '\\.')}","PublicIPv6":null,"BackendType":"vxlan","BackendData":\\{"VNI":1,"VtepMAC":"([0-9a-f]{2}:){5}[0-9a-f]{2}"\\}\\}$`,
          ),
        )
      }
      expect(new Set(subnets).size).toBe(3)
    })

    it('programs flannel.1 and one neighbour, FDB entry and onlink route per peer (interop checks 17-18)', async () => {
      const hosts = cluster!.topology.hosts
      const macs = await Promise.all(
        hosts.map(async (h) => (await readLinks(h.ns, 'flannel.1'))[0]!.address!),
      )
      for (const [i, host] of hosts.entries()) {
        const [dev] = await readLinks(host.ns, 'flannel.1')
        expect(dev!.mtu).toBe(1450)
        expect(dev!.linkinfo?.info_data).toMatchObject({
          id: 1,
          port: 8472,
          learning: false,
          local: host.underlayIp,
        })
        const peers = hosts.map((h, j) => ({ h, j })).filter(({ j }) => j !== i)
        const neigh = await waitUntil(async () => {
          const n = await readNeighbours(host.ns, 'flannel.1')
          return n.length === 2 ? n : undefined
        })
        expect(neigh!.map((n) => `${n.dst} ${n.lladdr} ${n.state?.join(',')}`).sort()).toEqual(
          peers.map(({ j }) => `${subnets[j]!.split('/')[0]} ${macs[j]} PERMANENT`).sort(),
        )
        const fdb = await readFdb(host.ns, 'flannel.1')
        expect(fdb.map((e) => `${e.mac} ${e.dst} ${e.flags?.join(',')} ${e.state}`).sort()).toEqual(
          peers.map(({ h, j }) => `${macs[j]} ${h.underlayIp} self permanent`).sort(),
        )
        const routes = await readRoutes(host.ns, { dev: 'flannel.1' })
        expect(routes.map((r) => `${r.dst} via ${r.gateway} ${r.flags?.join(',')}`).sort()).toEqual(
          peers.map(({ j }) => `${subnets[j]} via ${subnets[j]!.split('/')[0]} onlink`).sort(),
        )
      }
    })

    it('carries pings between every pair of pod addresses', async () => {
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('carries a 1 MiB TCP echo between every pair of pod addresses', async () => {
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('restores a route, a neighbour and an FDB entry deleted by hand', async () => {
      const h1 = cluster!.topology.hosts[0]!
      const peer = subnets[1]!
      const gw = peer.split('/')[0]!
      await h1.exec('ip', ['route', 'del', peer])
      await h1.exec('ip', ['neigh', 'del', gw, 'dev', 'flannel.1'])
      const restored = await waitUntil(async () => {
        const r = await readRoutes(h1.ns, { dev: 'flannel.1' })
        const n = await readNeighbours(h1.ns, 'flannel.1')
        return r.some((x) => x.dst === peer) && n.some((x) => x.dst === gw)
      }, 5000)
      expect(restored).toBe(true)
      const [fdb] = await readFdb(h1.ns, 'flannel.1')
      await h1.exec('bridge', [
        'fdb',
        'del',
        fdb!.mac,
        'dev',
        'flannel.1',
        'dst',
        fdb!.dst!,
        'self',
      ])
      const back = await waitUntil(
        async () => (await readFdb(h1.ns, 'flannel.1')).length === 2,
        5000,
      )
      expect(back).toBe(true)
    })

    it('recreates a deleted flannel.1 with its MAC and entries, and traffic resumes', async () => {
      const h2 = cluster!.topology.hosts[1]!
      const [before] = await readLinks(h2.ns, 'flannel.1')
      await h2.exec('ip', ['link', 'del', 'flannel.1'])
      const after = await waitUntil(async () => {
        const r = await readRoutes(h2.ns, { dev: 'flannel.1' }).catch(() => [])
        return r.length === 2 ? (await readLinks(h2.ns, 'flannel.1'))[0] : undefined
      }, 8000)
      expect(after?.address).toBe(before!.address)
      expect(after?.ifindex).not.toBe(before!.ifindex)
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('restarts an agent on the same subnet without duplicate entries, and traffic resumes', async () => {
      const [before] = await readLinks(cluster!.topology.hosts[0]!.ns, 'flannel.1')
      const subnetFile = cluster!.agents[0]!.subnetFile
      await cluster!.stopAgent(0)
      await rm(subnetFile, { force: true })
      cluster!.startAgent(0)
      const env = await cluster!.waitForSubnetEnv(0)
      expect(env.FLANNEL_SUBNET).toBe(podAddress(subnets[0]!) + '/24')
      const [after] = await readLinks(cluster!.topology.hosts[0]!.ns, 'flannel.1')
      expect(after!.address).toBe(before!.address)
      for (const host of cluster!.topology.hosts) {
        expect(await readFdb(host.ns, 'flannel.1')).toHaveLength(2)
        expect(await readNeighbours(host.ns, 'flannel.1')).toHaveLength(2)
      }
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('removes a leaving host from the others when its lease is deleted', async () => {
      await cluster!.stopAgent(2)
      const leaving = subnets[2]!
      await cluster!.etcd.etcdctl(
        'del',
        `${cluster!.etcdPrefix}/subnets/${leaving.replace('/', '-')}`,
      )
      for (const host of cluster!.topology.hosts.slice(0, 2)) {
        const gone = await waitUntil(async () => {
          const r = await readRoutes(host.ns, { dev: 'flannel.1' })
          const n = await readNeighbours(host.ns, 'flannel.1')
          const f = await readFdb(host.ns, 'flannel.1')
          return !r.some((x) => x.dst === leaving) && n.length === 1 && f.length === 1
        }, 5000)
        expect(gone, `entries of ${leaving} on ${host.ns}`).toBe(true)
      }
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: host-gw${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        config: JSON.stringify({ Network: NETWORK, Backend: { Type: 'host-gw' } }),
      })
      subnets = await bringUp(cluster)
      for (const [i, host] of cluster.topology.hosts.entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('publishes host-gw leases and routes each peer subnet via its underlay address (check 20)', async () => {
      const leases = await cluster!.leases()
      expect(leases.map((l) => JSON.parse(l.value).BackendType)).toEqual([
        'host-gw',
        'host-gw',
        'host-gw',
      ])
      const hosts = cluster!.topology.hosts
      for (const [i, host] of hosts.entries()) {
        const routes = await waitUntil(async () => {
          const r = (await readRoutes(host.ns, { dev: 'eth0' })).filter((x) =>
            x.dst.startsWith('10.244.'),
          )
          return r.length === 2 ? r : undefined
        })
        expect(routes!.map((r) => `${r.dst} via ${r.gateway}`).sort()).toEqual(
          hosts
            .map((h, j) => ({ h, j }))
            .filter(({ j }) => j !== i)
            .map(({ h, j }) => `${subnets[j]} via ${h.underlayIp}`)
            .sort(),
        )
      }
    })

    it('carries pings between every pair of pod addresses', async () => {
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('carries a 1 MiB TCP echo between every pair of pod addresses', async () => {
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('restores a route deleted by hand', async () => {
      const h1 = cluster!.topology.hosts[0]!
      await h1.exec('ip', ['route', 'del', subnets[1]!])
      const back = await waitUntil(
        async () => (await readRoutes(h1.ns, { dev: 'eth0' })).some((r) => r.dst === subnets[1]),
        5000,
      )
      expect(back).toBe(true)
    })

    it('removes a leaving host route from the others when its lease is deleted', async () => {
      await cluster!.stopAgent(2)
      await cluster!.etcd.etcdctl(
        'del',
        `${cluster!.etcdPrefix}/subnets/${subnets[2]!.replace('/', '-')}`,
      )
      for (const host of cluster!.topology.hosts.slice(0, 2)) {
        const gone = await waitUntil(
          async () =>
            !(await readRoutes(host.ns, { dev: 'eth0' })).some((r) => r.dst === subnets[2]),
          5000,
        )
        expect(gone).toBe(true)
      }
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: alloc${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        config: JSON.stringify({ Network: NETWORK, Backend: { Type: 'alloc' } }),
      })
      subnets = await bringUp(cluster)
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('gives each host its own lease and subnet.env, and touches no routes', async () => {
      const leases = await cluster!.leases()
      expect(leases).toHaveLength(3)
      expect(new Set(subnets).size).toBe(3)
      for (const [i, host] of cluster!.topology.hosts.entries()) {
        const lease = leases.find((l) => l.key.endsWith(subnets[i]!.replace('/', '-')))
        expect(lease?.value).toBe(`{"PublicIP":"${host.underlayIp}","PublicIPv6":null}`)
        const routes = await readRoutes(host.ns)
        expect(routes.filter((r) => r.dst.startsWith('10.244.'))).toEqual([])
      }
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: udp${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        config: JSON.stringify({ Network: NETWORK, Backend: { Type: 'udp' } }),
        agentFlags: [`--healthz-ip=127.0.0.1`, `--healthz-port=${HEALTHZ_PORT}`],
      })
      subnets = await bringUp(cluster)
      for (const [i, host] of cluster.topology.hosts.entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('publishes udp leases (no BackendType) and sets up flannel0', async () => {
      const leases = await cluster!.leases()
      expect(leases).toHaveLength(3)
      for (const [i, host] of cluster!.topology.hosts.entries()) {
        const lease = leases.find((l) => l.key.endsWith(subnets[i]!.replace('/', '-')))
        expect(lease?.value).toBe(`{"PublicIP":"${host.underlayIp}","PublicIPv6":null}`)
        const [tun] = await readLinks(host.ns, 'flannel0')
        expect(tun?.mtu).toBe(1472)
      }
    })

    it('carries pings between every pair of pod addresses', async () => {
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('carries a 1 MiB TCP echo between every pair of pod addresses', async () => {
      expect(await tcpMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })

    it('sends the inner IPv4 packet as the whole UDP payload on port 8285, its TTL dropping once per flannel node', async () => {
      const [h1, h2] = cluster!.topology.hosts
      const src = podAddress(subnets[0]!)
      const dst = podAddress(subnets[1]!)
      const { packets, output } = await capture(
        h2!,
        'eth0',
        ['udp', 'port', String(UDP_PORT)],
        () => h1!.exec('ping', ['-c3', '-i0.2', '-W2', '-I', src, dst]),
      )
      expect(output).toMatch(/3 received/)
      // The reply leaves host 2's kernel with TTL 64, host 2's loop and host 1's loop take one each.
      expect(output).toMatch(/ttl=62 /)
      const payloads = packets.map(udpPayload).filter((p) => p !== undefined)
      expect(payloads.length).toBeGreaterThanOrEqual(6)
      for (const p of payloads) {
        expect(p[0]).toBe(0x45)
        const inner = ipv4Header(p)
        expect(inner.totalLength).toBe(p.length) // nothing prepended or appended
        expect(inner.protocol).toBe(1)
        expect([inner.src, inner.dst].sort()).toEqual([src, dst].sort())
        // On the wire both ways: the sender's 64 minus one in the sending loop.
        expect(inner.ttl).toBe(63)
      }
    })

    it('answers a connection to an unleased address with ICMP net-unreachable from flannel0', async () => {
      const h1 = cluster!.topology.hosts[0]!
      const used = new Set(subnets.map((s) => s.split('.')[2]))
      const third = [...Array(256).keys()].find((n) => !used.has(String(n)))!
      const unleased = `10.244.${third}.1`
      const tunAddress = subnets[0]!.split('/')[0]!
      // The reply's source is flannel0's own address: a martian without accept_local (backend README).
      await h1.exec('sysctl', ['-qw', 'net.ipv4.conf.flannel0.accept_local=1'])
      const client = `const c = require('net').connect({ host: '${unleased}', port: 80, localAddress: '${podAddress(subnets[0]!)}' }); c.on('connect', () => { console.log('connected'); c.destroy() }); c.on('error', (e) => console.log(e.code)); setTimeout(() => { console.log('timeout'); process.exit(0) }, 4000).unref()`
      const { packets, output } = await capture(h1, 'flannel0', ['icmp'], () =>
        h1.exec(process.execPath, ['-e', client]),
      )
      expect(output.trim()).toBe('ENETUNREACH')
      const replies = packets.filter((p) => p[9] === 1 && p[20] === 3)
      expect(replies).toHaveLength(1)
      const icmp = replies[0]!
      expect(ipv4Header(icmp)).toMatchObject({
        ttl: 8,
        src: tunAddress,
        dst: podAddress(subnets[0]!),
      })
      expect(icmp[21]).toBe(0) // code 0: net unreachable
      expect(ipv4Header(icmp.subarray(28))).toMatchObject({ protocol: 6, dst: unleased })
    })

    it('drops and counts a datagram from a non-peer (the switch) in /metrics', async () => {
      const h1 = cluster!.topology.hosts[0]!
      const dropped = async (): Promise<number> => {
        const text = await h1.exec('curl', ['-sf', `http://127.0.0.1:${HEALTHZ_PORT}/metrics`])
        const m = /^flannel_udp_dropped_packets_total\{reason="unknown_peer"\} (\d+)$/m.exec(text)
        if (!m) throw new Error(`no unknown_peer drop counter in /metrics:\n${text}`)
        return Number(m[1])
      }
      const before = await dropped()
      // A well-formed inner packet claiming host 2's pod address as its source, for host 1's pod.
      const inner = Buffer.alloc(28)
      inner.writeUInt8(0x45, 0)
      inner.writeUInt16BE(28, 2)
      inner.writeUInt8(64, 8)
      inner.writeUInt8(1, 9)
      Buffer.from(podAddress(subnets[1]!).split('.').map(Number)).copy(inner, 12)
      Buffer.from(podAddress(subnets[0]!).split('.').map(Number)).copy(inner, 16)
      const send = `const s = require('dgram').createSocket('udp4'); s.send(Buffer.from('${inner.toString('hex')}', 'hex'), ${UDP_PORT}, '${h1.underlayIp}', (e) => { s.close(); if (e) throw e })`
      await nsExec(cluster!.topology.switchNs, process.execPath, ['-e', send])
      const after = await waitUntil(async () => {
        const n = await dropped()
        return n > before ? n : undefined
      }, 5000)
      expect(after).toBe(before + 1)
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: vxlan with VNI, Port, GBP and TxChecksumOffload${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined

    beforeAll(async () => {
      cluster = await startCluster({
        hosts: 1,
        config: JSON.stringify({
          Network: NETWORK,
          Backend: { Type: 'vxlan', VNI: 42, Port: 4789, GBP: true, TxChecksumOffload: false },
        }),
      })
      await bringUp(cluster)
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('shows the options in ip -d link and in the lease', async () => {
      const host = cluster!.topology.hosts[0]!
      const [dev] = await readLinks(host.ns, 'flannel.42')
      expect(dev!.linkinfo?.info_data).toMatchObject({ id: 42, port: 4789, gbp: true })
      const [lease] = await cluster!.leases()
      expect(JSON.parse(lease!.value).BackendData).toEqual({ VNI: 42, VtepMAC: dev!.address })
    })

    it('switches tx checksum offload off on the device when TxChecksumOffload is false', async () => {
      const host = cluster!.topology.hosts[0]!
      const features = await host.exec('ethtool', ['-k', 'flannel.42'])
      expect(features).toMatch(/^tx-checksumming: off$/m)
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: vxlan DirectRouting on one L2 segment${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    let subnets: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        hosts: 2,
        config: JSON.stringify({
          Network: NETWORK,
          Backend: { Type: 'vxlan', DirectRouting: true },
        }),
      })
      subnets = await bringUp(cluster)
      for (const [i, host] of cluster.topology.hosts.entries()) {
        await host.addPodAddress(`${podAddress(subnets[i]!)}/24`)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('routes peers via their PublicIP instead of the tunnel (interop check 19), and pings', async () => {
      const [h1, h2] = cluster!.topology.hosts
      const direct = await waitUntil(async () =>
        (await readRoutes(h1!.ns, { dev: 'eth0' })).find((r) => r.dst === subnets[1]),
      )
      expect(direct?.gateway).toBe(h2!.underlayIp)
      expect(await readRoutes(h1!.ns, { dev: 'flannel.1' })).toEqual([])
      expect(await readFdb(h1!.ns, 'flannel.1')).toEqual([])
      expect(await pingMatrix(cluster!.topology.hosts, subnets)).toEqual([])
    })
  },
)

describe.skipIf(skip !== undefined)(
  `multi-host e2e: dual-stack vxlan${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let cluster: Cluster | undefined
    const v6: string[] = []

    beforeAll(async () => {
      cluster = await startCluster({
        hosts: 2,
        ipv6: true,
        config: JSON.stringify({
          Network: NETWORK,
          EnableIPv6: true,
          IPv6Network: 'fd00:10::/56',
          Backend: { Type: 'vxlan' },
        }),
      })
      cluster.topology.hosts.forEach((_, i) => cluster!.startAgent(i))
      for (const [i, host] of cluster.topology.hosts.entries()) {
        const env = await cluster.waitForSubnetEnv(i)
        // FLANNEL_IPV6_SUBNET is the subnet's first address with its prefix, e.g. fd00:10:0:7::1/64.
        v6.push(env.FLANNEL_IPV6_SUBNET!)
        await host.addPodAddress(env.FLANNEL_IPV6_SUBNET!)
      }
    }, 60_000)
    afterAll(async () => {
      await cluster?.destroy()
    }, 30_000)

    it('programs flannel-v6.1 (interop check 22) and carries IPv6 pings between pod addresses', async () => {
      const [h1, h2] = cluster!.topology.hosts
      const [dev] = await readLinks(h1!.ns, 'flannel-v6.1')
      expect(dev!.linkinfo?.info_data).toMatchObject({ id: 1, local6: '2001:db8::1' })
      const leases = await cluster!.leases()
      expect(leases.every((l) => JSON.parse(l.value).BackendV6Data?.VNI === 1)).toBe(true)
      const routes = await waitUntil(async () => {
        const r = await readRoutes(h1!.ns, { dev: 'flannel-v6.1', v6: true })
        return r.some((x) => x.gateway !== undefined) ? r : undefined
      })
      expect(routes?.some((r) => r.flags?.includes('onlink'))).toBe(true)
      const src = v6[0]!.split('/')[0]!
      const dst = v6[1]!.split('/')[0]!
      const ok = await waitUntil(
        () =>
          h1!
            .exec('ping', ['-6', '-c1', '-W1', '-I', src, dst])
            .then((o) => o.includes('1 received')),
        8000,
        100,
      )
      expect(ok, `${src} -> ${dst} (${h2!.ns})`).toBe(true)
    })
  },
)
