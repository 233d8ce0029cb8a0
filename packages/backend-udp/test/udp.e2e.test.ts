import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { pauseProcess, resumeProcess } from '@flannel/testkit/proc'
import { waitUntil } from '@flannel/testkit/netns'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  Namespaces,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
  sh,
} from '../../linux/test/helpers/netns.js'
import type { UdpCounters } from '../src/index.js'
import { icmpEcho, parseIp4, rawPackets, tcp4, udpPayloadsFromPcap } from './helpers/ipv4.js'
import { runRawPeer, startUdpNode, type JsonLineProcess } from './helpers/proc.js'
import {
  SANITIZER_REPORT,
  buildSanitizedAddon,
  sanitizersUnavailable,
  type SanitizedAddon,
} from './helpers/sanitizer.js'

const unavailable =
  (await kernelTestsUnavailable()) ??
  (await sh('sh', ['-c', 'test -c /dev/net/tun && command -v tcpdump && command -v ping'])
    .then(() => undefined)
    .catch(() => '/dev/net/tun, tcpdump or ping is missing'))
if (unavailable) console.warn(`udp namespace tests skipped: ${unavailable}`)
const noSanitizers = unavailable ? undefined : await sanitizersUnavailable()
if (noSanitizers)
  console.warn(`udp namespace tests: host 1 runs the package's addon build (${noSanitizers})`)

const NETWORK = '10.5.0.0/16'
const PORT = 8285

/** ping's output also when it fails (unreachable replies are printed on stdout). */
const pingOutput = (ns: string, args: string): Promise<string> =>
  inNs(ns, 'sh', ['-c', `ping ${args} || true`])

describe.skipIf(unavailable !== undefined)(
  `udp backend across namespace hosts${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const ns: string[] = []
    const nodes: JsonLineProcess[] = []
    let tmp = ''

    const counters = async (node: JsonLineProcess): Promise<UdpCounters> => {
      const from = node.lines.length
      node.send({ op: 'counters' })
      return node.waitFor<UdpCounters>('counters', from)
    }

    // Builds the sanitized addon and starts node processes: slow on a busy machine.
    beforeAll(async () => {
      tmp = await mkdtemp(join(tmpdir(), 'flannel-udp-'))
      // Host 1 (offload mode) runs the datapath built with ASan and UBSan where a compiler can.
      const sanitized: SanitizedAddon | undefined = noSanitizers
        ? undefined
        : await buildSanitizedAddon(tmp)
      const sw = await namespaces.create(`${prefix}-sw`)
      await inNs(sw, 'ip', ['link', 'add', 'br0', 'type', 'bridge'])
      await inNs(sw, 'ip', ['link', 'set', 'br0', 'up'])
      for (const n of [1, 2, 3]) {
        const h = await namespaces.create(`${prefix}-h${n}`)
        ns.push(h)
        const port = `${prefix}p${n}`
        await inNs(sw, 'ip', [
          'link',
          'add',
          port,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          h,
        ])
        await inNs(sw, 'ip', ['link', 'set', port, 'master', 'br0', 'up'])
        await inNs(h, 'ip', ['addr', 'add', `192.0.2.${n}/24`, 'dev', 'eth0'])
        await inNs(h, 'ip', ['link', 'set', 'eth0', 'up'])
        // The "pod" address sits on an empty bridge (no dummy links on this kernel).
        await inNs(h, 'ip', ['link', 'add', 'cni0', 'type', 'bridge'])
        await inNs(h, 'ip', ['addr', 'add', `10.5.${n}.1/24`, 'dev', 'cni0'])
        await inNs(h, 'ip', ['link', 'set', 'cni0', 'up'])
      }
      // Hosts 1 and 2 run the backend; host 3 is a raw flanneld-format peer.
      for (const n of [1, 2]) {
        nodes.push(
          startUdpNode(
            ns[n - 1]!,
            {
              network: NETWORK,
              subnet: `10.5.${n}.0/24`,
              iface: 'eth0',
              ifaceAddr: `192.0.2.${n}`,
              mtu: 1500,
              mode: n === 1 ? 'offload' : 'single',
            },
            n === 1 ? sanitized?.env : undefined,
          ),
        )
      }
      await Promise.all(nodes.map((p) => p.waitFor('ready', 0, 60_000)))
      for (const [node, peers] of [
        [nodes[0]!, [2, 3]],
        [nodes[1]!, [1, 3]],
      ] as const) {
        for (const p of peers)
          node.send({ op: 'add', subnet: `10.5.${p}.0/24`, publicIP: `192.0.2.${p}` })
      }
      await Promise.all(nodes.map((p) => counters(p)))
    }, 180_000)

    afterAll(async () => {
      await Promise.all(nodes.map((p) => p.stop()))
      await namespaces.removeAll()
      if (tmp) await rm(tmp, { recursive: true, force: true })
    })

    it('creates flannel0 with <subnet>/32, MTU 1472 and one route for the network', async () => {
      const ready = nodes[0]!.lines.find((l) => 'ready' in l)!.ready as {
        device: string
        mtu: number
      }
      expect(ready).toMatchObject({ device: 'flannel0', mtu: 1472, mode: 'offload' })
      if (!noSanitizers) expect(ready).toMatchObject({ addon: expect.stringMatching(/asan/) })
      const link = await inNs(ns[0]!, 'ip', ['-o', 'link', 'show', 'flannel0'])
      expect(link).toMatch(/mtu 1472/)
      expect(link).toMatch(/UP/)
      expect(await inNs(ns[0]!, 'ip', ['-o', '-4', 'addr', 'show', 'dev', 'flannel0'])).toMatch(
        /inet 10\.5\.1\.0\/32/,
      )
      expect(await inNs(ns[0]!, 'ip', ['route', 'show', 'dev', 'flannel0'])).toMatch(
        /^10\.5\.0\.0\/16 /m,
      )
    })

    it('pings across, the inner TTL dropping once on each flannel node, raw IPv4 as the whole UDP payload', async () => {
      const pcap = join(tmp, 'underlay.pcap')
      const dump = spawn('ip', [
        'netns',
        'exec',
        ns[1]!,
        'tcpdump',
        '-i',
        'eth0',
        '-U',
        '-n',
        '-w',
        pcap,
        '-c',
        '6',
        'udp',
        'port',
        String(PORT),
      ])
      const dumpDone = new Promise<void>((resolve) => dump.once('exit', () => resolve()))
      try {
        await new Promise((r) => setTimeout(r, 500))
        const out = await inNs(ns[0]!, 'ping', [
          '-c',
          '3',
          '-i',
          '0.2',
          '-W',
          '2',
          '-I',
          '10.5.1.1',
          '10.5.2.1',
        ])
        expect(out).toMatch(/3 received/)
        // 64 from host 2's kernel, -1 in host 2's loop, -1 in host 1's loop.
        expect(out).toMatch(/ttl=62/)
        await Promise.race([dumpDone, new Promise((r) => setTimeout(r, 3000))])
      } finally {
        dump.kill()
        await dumpDone
      }
      const payloads = udpPayloadsFromPcap(await readFile(pcap), PORT)
      expect(payloads.length).toBeGreaterThanOrEqual(2)
      for (const p of payloads) {
        const ip = parseIp4(p)
        expect(ip.version).toBe(4)
        expect(ip.totalLength).toBe(p.length) // nothing prepended, nothing appended
        expect(ip.checksumOk).toBe(true)
        expect([ip.src, ip.dst].sort()).toEqual(['10.5.1.1', '10.5.2.1'])
        expect(ip.protocol).toBe(1)
      }
    })

    it('carries TCP (iperf3, 2 MB) between the subnets', async () => {
      const server = spawn('ip', ['netns', 'exec', ns[1]!, 'iperf3', '-s', '-1', '-B', '10.5.2.1'])
      const done = new Promise<void>((resolve) => server.once('exit', () => resolve()))
      try {
        await new Promise((r) => setTimeout(r, 400))
        const out = await inNs(ns[0]!, 'iperf3', [
          '-c',
          '10.5.2.1',
          '-B',
          '10.5.1.1',
          '-n',
          '2M',
          '-J',
        ])
        const result = JSON.parse(out) as {
          end: { sum_sent: { bytes: number }; sum_received: { bytes: number } }
        }
        expect(result.end.sum_sent.bytes).toBeGreaterThanOrEqual(2 * 1024 * 1024)
        expect(result.end.sum_received.bytes).toBeGreaterThan(0)
        // Host 1 runs the offload mode (super-packets cut in C) against host 2's per-packet mode.
        expect((await counters(nodes[0]!)).superPackets).toBeGreaterThan(0)
      } finally {
        server.kill()
        await done
      }
    })

    it('answers an unknown destination with ICMP net unreachable from the TUN address (not for ICMP)', async () => {
      // The reply comes from the TUN's own address; the kernel takes such a
      // packet only with accept_local (flanneld's replies have the same source).
      await inNs(ns[0]!, 'sysctl', ['-qw', 'net.ipv4.conf.flannel0.accept_local=1'])
      const before = await counters(nodes[0]!)
      const pcap = join(tmp, 'tun.pcap')
      const dump = spawn('ip', [
        'netns',
        'exec',
        ns[0]!,
        'tcpdump',
        '-i',
        'flannel0',
        '-U',
        '-n',
        '-w',
        pcap,
        'icmp',
      ])
      const dumpDone = new Promise<void>((resolve) => dump.once('exit', () => resolve()))
      let tcp: string
      try {
        await new Promise((r) => setTimeout(r, 500))
        tcp = await inNs(ns[0]!, 'sh', [
          '-c',
          'timeout 3 bash -c "exec 3<>/dev/tcp/10.5.77.1/80" 2>&1 || true',
        ])
        // An ICMP offender is not answered (flanneld's rule).
        await pingOutput(ns[0]!, '-c 1 -W 1 10.5.77.1')
        await new Promise((r) => setTimeout(r, 300))
      } finally {
        dump.kill()
        await dumpDone
      }
      expect(tcp).toMatch(/Network is unreachable/)
      const after = await counters(nodes[0]!)
      expect(after.icmpUnreachableSent - before.icmpUnreachableSent).toBe(1)
      expect(after.dropNoRoute - before.dropNoRoute).toBe(1)
      const packets = rawPackets(await readFile(pcap)).filter((p) => p[20] === 3)
      expect(packets).toHaveLength(1)
      const icmp = packets[0]!
      expect(parseIp4(icmp)).toMatchObject({
        ihl: 20,
        ttl: 8,
        protocol: 1,
        src: '10.5.1.0',
        dst: '10.5.1.0',
        checksumOk: true,
      })
      expect(icmp[21]).toBe(0) // net unreachable
      const quoted = parseIp4(icmp.subarray(28))
      expect(quoted).toMatchObject({ protocol: 6, dst: '10.5.77.1' })
      expect(icmp.length).toBe(20 + 8 + quoted.ihl + 8)
    })

    it('exchanges raw IPv4 datagrams with a flanneld-format peer; drops and counts spoofed and non-peer datagrams', async () => {
      const before = await counters(nodes[0]!)
      const payload = Buffer.from('flannel-udp-wire-check')
      const good = icmpEcho('10.5.3.7', '10.5.1.1', 10, 0x4242, payload)
      const spoofed = icmpEcho('10.5.9.9', '10.5.1.1', 10, 0x4343, payload)
      const report = await runRawPeer<{ received: { from: string; port: number; hex: string }[] }>(
        ns[2]!,
        {
          bind: '192.0.2.3',
          port: PORT,
          to: '192.0.2.1',
          toPort: PORT,
          sends: [
            { hex: good.toString('hex') },
            { hex: spoofed.toString('hex') },
            { hex: good.toString('hex'), fromPort: 9999 },
          ],
          listenMs: 800,
        },
      )
      // Exactly one echo reply comes back: to the good request only.
      const replies = report.received.map((r) => ({ ...r, pkt: Buffer.from(r.hex, 'hex') }))
      expect(replies).toHaveLength(1)
      const reply = replies[0]!
      expect(reply.from).toBe('192.0.2.1')
      expect(reply.port).toBe(PORT)
      const ip = parseIp4(reply.pkt)
      expect(ip).toMatchObject({
        version: 4,
        ihl: 20,
        protocol: 1,
        src: '10.5.1.1',
        dst: '10.5.3.7',
        checksumOk: true,
      })
      expect(ip.totalLength).toBe(reply.pkt.length)
      expect(ip.ttl).toBe(63) // the kernel's 64, -1 in host 1's loop
      expect(reply.pkt[20]).toBe(0) // echo reply
      expect(reply.pkt.readUInt16BE(24)).toBe(0x4242)
      expect(reply.pkt.subarray(28).equals(payload)).toBe(true)
      const after = await counters(nodes[0]!)
      expect(after.dropSpoofedSource - before.dropSpoofedSource).toBe(1)
      expect(after.dropUnknownPeer - before.dropUnknownPeer).toBe(1)
    })

    it('does not coalesce TCP segments with a data offset below 5 sent from a peer address (issue 12); well-formed pairs queued the same way are', async () => {
      const node = nodes[0]!
      /** Sends the datagrams from host 3's PublicIP:Port while host 1 is frozen, so that its
       * loop finds them queued and reads them in batches; returns host 1's counter deltas. */
      const queued = async (datagrams: Buffer[]): Promise<{ rx: number; super: number }> => {
        const before = await counters(node)
        await pauseProcess(node.pid)
        try {
          await runRawPeer(ns[2]!, {
            bind: '192.0.2.3',
            port: PORT,
            to: '192.0.2.1',
            toPort: PORT,
            sends: datagrams.map((d) => ({ hex: d.toString('hex') })),
            listenMs: 0,
          })
        } finally {
          resumeProcess(node.pid)
        }
        const after = await waitUntil(async () => {
          const c = await counters(node)
          return c.rxPackets - before.rxPackets >= datagrams.length ? c : undefined
        }, 60_000)
        expect(node.stderr, 'host 1 ran without a sanitizer report').not.toMatch(SANITIZER_REPORT)
        if (!after) throw new Error(`host 1 did not take every datagram\n${node.stderr}`)
        return {
          rx: after.rxPackets - before.rxPackets,
          super: after.superPackets - before.superPackets,
        }
      }
      const payload = Buffer.alloc(100, 0x61)
      const pair = (sport: number, mangle: (p: Buffer) => Buffer): Buffer[] => {
        const first = mangle(tcp4({ src: '10.5.3.7', dst: '10.5.1.1', sport, seq: 7000, payload }))
        // The second continues the first at the byte the broken length arithmetic expects.
        const next = 7000 + first.length - 20 - (first[32]! >> 4) * 4
        return [
          first,
          mangle(tcp4({ src: '10.5.3.7', dst: '10.5.1.1', sport, seq: next, payload })),
        ]
      }
      const dataOffsetZero = (p: Buffer): Buffer => {
        p[32] = 0 // data offset 0: a "TCP header" of 0 bytes
        return p
      }
      const malformed = [40001, 40002, 40003, 40004, 40005, 40006, 40007, 40008].flatMap((sport) =>
        pair(sport, dataOffsetZero),
      )
      expect(await queued(malformed)).toEqual({ rx: malformed.length, super: 0 })
      // The same pairs with a well-formed TCP header are merged: the batches were there.
      const wellFormed = [41001, 41002, 41003, 41004].flatMap((sport) => pair(sport, (p) => p))
      const good = await queued(wellFormed)
      expect(good.rx).toBe(wellFormed.length)
      expect(good.super).toBeGreaterThan(0)
    }, 120_000)

    it('follows peers removed and added at run time without restarting the loop', async () => {
      nodes[0]!.send({ op: 'remove', subnet: '10.5.2.0/24' })
      expect((await counters(nodes[0]!)).peers).toBe(1)
      const gone = await inNs(ns[0]!, 'sh', [
        '-c',
        'timeout 3 bash -c "exec 3<>/dev/tcp/10.5.2.1/80" 2>&1 || true',
      ])
      expect(gone).toMatch(/Network is unreachable/)
      nodes[0]!.send({ op: 'add', subnet: '10.5.2.0/24', publicIP: '192.0.2.2' })
      expect((await counters(nodes[0]!)).peers).toBe(2)
      const back = await inNs(ns[0]!, 'ping', ['-c', '1', '-W', '2', '-I', '10.5.1.1', '10.5.2.1'])
      expect(back).toMatch(/1 received/)
    })

    it('stops cleanly: threads joined, the TUN and its route gone', async () => {
      const node = nodes[1]!
      const from = node.lines.length
      node.send({ op: 'stop' })
      const stopped = await node.waitFor<UdpCounters>('stopped', from)
      expect(stopped.rxPackets).toBeGreaterThan(0)
      await node.stop()
      await expect(inNs(ns[1]!, 'ip', ['link', 'show', 'flannel0'])).rejects.toThrow(
        /does not exist/,
      )
      expect(await inNs(ns[1]!, 'ip', ['route', 'show', '10.5.0.0/16'])).toBe('')
    })
  },
)
