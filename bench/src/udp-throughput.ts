/**
 * udp backend throughput: iperf3 TCP, one stream, between two network
 * namespaces joined by a veth pair (underlay 192.0.2.1 <-> 192.0.2.2), over
 *   1. the raw veth (the ceiling),
 *   2. kernel vxlan set up as flanneld does it,
 *   3. the udp backend in `single` mode (one packet per system call, flanneld's C loop),
 *   4. the udp backend in `batch` mode (recvmmsg/sendmmsg, a thread per direction),
 *   5. the udp backend in `offload` mode (falls back to batch where unavailable; the mode run is printed),
 *   6. real flanneld's udp backend, when a flanneld binary is there (`FLANNELD_BIN` or
 *      `.tmp/flanneld`, see packages/testkit/src/flanneld/README.md) and etcd is installed.
 * Prints Gbit/s (median of the runs), sender/receiver CPU as iperf3 reports
 * it, and ratios. Needs root, iperf3 and /dev/net/tun. Nothing is asserted.
 *
 *   pnpm --filter @flannel/bench udp-throughput [seconds=5] [runs=3]
 */
import { execFile, spawn } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { promisify } from 'node:util'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  ALLOCATED,
  Flanneld,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
  startInteropEtcd,
} from '@flannel/testkit/flanneld'
import { startUdpNode, type JsonLineProcess } from '../../packages/backend-udp/test/helpers/proc.js'

const run = promisify(execFile)
const seconds = Number(process.argv[2] ?? 5)
const runs = Number(process.argv[3] ?? 3)
const prefix = `fl${randomBytes(2).toString('hex')}`
const A = `${prefix}-a`
const B = `${prefix}-b`

async function sh(...args: string[]): Promise<string> {
  const { stdout } = await run(args[0]!, args.slice(1), { maxBuffer: 64 * 1024 * 1024 })
  return stdout
}
const inNs = (ns: string, ...args: string[]): Promise<string> =>
  sh('ip', 'netns', 'exec', ns, ...args)

interface Result {
  readonly gbps: number
  readonly cpuSender: number
  readonly cpuReceiver: number
  readonly retransmits: number
}

async function iperf(target: string): Promise<Result> {
  const all: Result[] = []
  for (let i = 0; i < runs; i++) {
    const out = await inNs(A, 'iperf3', '-c', target, '-t', String(seconds), '-J')
    const j = JSON.parse(out) as {
      end: {
        sum_received: { bits_per_second: number }
        sum_sent: { retransmits: number }
        cpu_utilization_percent: { host_total: number; remote_total: number }
      }
    }
    all.push({
      gbps: j.end.sum_received.bits_per_second / 1e9,
      cpuSender: j.end.cpu_utilization_percent.host_total,
      cpuReceiver: j.end.cpu_utilization_percent.remote_total,
      retransmits: j.end.sum_sent.retransmits,
    })
  }
  all.sort((x, y) => x.gbps - y.gbps)
  return all[Math.floor(all.length / 2)]!
}

async function topology(): Promise<void> {
  await sh('ip', 'netns', 'add', A)
  await sh('ip', 'netns', 'add', B)
  await sh('ip', 'link', 'add', `${prefix}x`, 'type', 'veth', 'peer', 'name', `${prefix}y`)
  for (const [ns, dev, n] of [
    [A, `${prefix}x`, 1],
    [B, `${prefix}y`, 2],
  ] as const) {
    await sh('ip', 'link', 'set', dev, 'netns', ns)
    await inNs(ns, 'ip', 'link', 'set', dev, 'name', 'eth0')
    await inNs(ns, 'ip', 'addr', 'add', `192.0.2.${n}/24`, 'dev', 'eth0')
    await inNs(ns, 'ip', 'link', 'set', 'eth0', 'up')
    await inNs(ns, 'ip', 'link', 'set', 'lo', 'up')
  }
}

async function vxlan(): Promise<() => Promise<void>> {
  const mac = (n: number): string => `0e:00:00:00:0${n}:00`
  for (const [ns, me, peer] of [
    [A, 1, 2],
    [B, 2, 1],
  ] as const) {
    await inNs(
      ns,
      'ip',
      'link',
      'add',
      'flannel.1',
      'address',
      mac(me),
      'type',
      'vxlan',
      'id',
      '1',
      'local',
      `192.0.2.${me}`,
      'dev',
      'eth0',
      'dstport',
      '8472',
      'nolearning',
    )
    await inNs(ns, 'ip', 'link', 'set', 'flannel.1', 'mtu', '1450', 'up')
    await inNs(ns, 'ip', 'addr', 'add', `10.6.${me}.0/32`, 'dev', 'flannel.1')
    await inNs(
      ns,
      'ip',
      'neigh',
      'add',
      `10.6.${peer}.0`,
      'lladdr',
      mac(peer),
      'dev',
      'flannel.1',
      'nud',
      'permanent',
    )
    await inNs(
      ns,
      'bridge',
      'fdb',
      'append',
      mac(peer),
      'dev',
      'flannel.1',
      'dst',
      `192.0.2.${peer}`,
      'self',
      'permanent',
    )
    await inNs(
      ns,
      'ip',
      'route',
      'add',
      `10.6.${peer}.0/24`,
      'via',
      `10.6.${peer}.0`,
      'dev',
      'flannel.1',
      'onlink',
    )
  }
  return async () => {
    await inNs(A, 'ip', 'link', 'del', 'flannel.1')
    await inNs(B, 'ip', 'link', 'del', 'flannel.1')
  }
}

async function udp(
  mode: 'single' | 'batch' | 'offload',
): Promise<{ stop: () => Promise<void>; mode: string }> {
  const nodes: JsonLineProcess[] = []
  for (const [ns, me, peer] of [
    [A, 1, 2],
    [B, 2, 1],
  ] as const) {
    const node = startUdpNode(ns, {
      network: '10.5.0.0/16',
      subnet: `10.5.${me}.0/24`,
      iface: 'eth0',
      ifaceAddr: `192.0.2.${me}`,
      mtu: 1500,
      mode,
    })
    nodes.push(node)
    const ready = await node.waitFor<{ mode: string }>('ready')
    node.send({ op: 'add', subnet: `10.5.${peer}.0/24`, publicIP: `192.0.2.${peer}` })
    await node.waitFor('event')
    void ready
  }
  const ready = nodes[0]!.lines.find((l) => 'ready' in l)!.ready as { mode: string }
  return {
    mode: ready.mode,
    stop: async () => {
      await Promise.all(nodes.map((n) => n.stop()))
    },
  }
}

/**
 * Real flanneld (udp backend) in both namespaces, on a private etcd. Returns
 * the address to send to (B's flannel0 address) and how to stop everything.
 */
async function flanneldUdp(): Promise<{ target: string; stop: () => Promise<void> }> {
  const etcd = await startInteropEtcd()
  const dir = await mkdtemp(join(tmpdir(), 'fl-bench-udp-'))
  const daemons: Flanneld[] = []
  const stop = async (): Promise<void> => {
    for (const d of daemons) await d.stop()
    await etcd.stop()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    await etcd
      .connect()
      .put('/coreos.com/network/config')
      .value('{"Network":"10.7.0.0/16","Backend":{"Type":"udp"}}')
    const subnets: string[] = []
    for (const ns of [A, B]) {
      const d = Flanneld.start({
        netns: { name: ns },
        etcdEndpoint: etcd.socketEndpoint,
        iface: 'eth0',
        subnetFile: join(dir, `${ns}.env`),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      daemons.push(d)
      subnets.push((await d.waitForLog(ALLOCATED, 20_000))[1]!)
      await d.waitForLog(SUBNET_FILE_WRITTEN)
    }
    const target = subnets[1]!.split('/')[0]!
    // until A's flanneld has learnt B's lease
    for (let i = 0; ; i++) {
      const ok = await inNs(A, 'ping', '-c1', '-W1', target).then(
        () => true,
        () => false,
      )
      if (ok) break
      if (i >= 20) throw new Error(`flanneld udp: no answer from ${target}`)
    }
    return { target, stop }
  } catch (error) {
    await stop()
    throw error
  }
}

async function main(): Promise<void> {
  await topology()
  const server = spawn('ip', ['netns', 'exec', B, 'iperf3', '-s'], { stdio: 'ignore' })
  const rows: { path: string; r: Result }[] = []
  try {
    await new Promise((r) => setTimeout(r, 500))
    rows.push({ path: 'raw veth', r: await iperf('192.0.2.2') })
    const undoVxlan = await vxlan()
    rows.push({ path: 'kernel vxlan', r: await iperf('10.6.2.0') })
    await undoVxlan()
    for (const mode of ['single', 'batch', 'offload'] as const) {
      const u = await udp(mode)
      try {
        rows.push({
          path: `udp ${mode}${u.mode !== mode ? ` (ran as ${u.mode})` : ''}`,
          r: await iperf('10.5.2.0'),
        })
      } finally {
        await u.stop()
      }
    }
    const noFlanneld = interopSkipReason() ?? etcdMissingReason()
    if (noFlanneld) {
      console.log(`(real flanneld udp row skipped: ${noFlanneld})`)
    } else {
      const f = await flanneldUdp()
      try {
        rows.push({ path: 'flanneld udp (v0.28 binary)', r: await iperf(f.target) })
      } finally {
        await f.stop()
      }
    }
  } finally {
    server.kill()
    await sh('ip', 'netns', 'del', A).catch(() => undefined)
    await sh('ip', 'netns', 'del', B).catch(() => undefined)
  }
  const single = rows.find((x) => x.path.startsWith('udp single'))!.r.gbps
  const raw = rows[0]!.r.gbps
  console.log(`iperf3 TCP, 1 stream, ${seconds} s x ${runs} runs (median), ${prefix}`)
  console.log(
    'path                         Gbit/s  vs raw  vs udp single  CPU snd/rcv %  retransmits',
  )
  for (const { path, r } of rows) {
    console.log(
      `${path.padEnd(28)} ${r.gbps.toFixed(2).padStart(6)}  ${((r.gbps / raw) * 100).toFixed(1).padStart(5)}%  ${(r.gbps / single).toFixed(2).padStart(12)}x  ${r.cpuSender.toFixed(0).padStart(5)} / ${r.cpuReceiver.toFixed(0).padEnd(5)}  ${r.retransmits}`,
    )
  }
  const flanneld = rows.find((x) => x.path.startsWith('flanneld'))?.r.gbps
  if (flanneld !== undefined) {
    const ratios = rows
      .filter((x) => x.path.startsWith('udp '))
      .map((x) => `${x.path.slice(4)} ${(x.r.gbps / flanneld).toFixed(1)}x`)
    console.log(`vs real flanneld udp: ${ratios.join(', ')}`)
  }
}

main().catch((error: unknown) => {
  console.error(error)
  process.exitCode = 1
})
