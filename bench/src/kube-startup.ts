/**
 * Start-up in Kubernetes mode (issue 16), ours vs real flanneld in the same
 * run, vxlan backend, each process in a fresh namespace host on a TEST-NET
 * underlay with etcd and a real kube-apiserver in the switch namespace:
 *
 * 1. time from spawning the process until subnet.env exists, in kube mode
 *    (`--kube-subnet-mgr`, the own Node with its podCIDR and nothing else in
 *    the API server) and in etcd mode (a fresh prefix per run, so each start
 *    allocates), `--runs` times each, median;
 * 2. convergence: N Nodes (default 1,000) with podCIDRs and vxlan annotations
 *    already in the API server; time from spawning the process until every
 *    peer's neighbour, FDB entry and route is in the host's kernel (and until
 *    subnet.env), `--convergence-runs` times each, median; RSS once converged.
 *
 * Numbers only; nothing is asserted. Runs are interleaved (ours, flanneld,
 * flanneld, ours, ...) so that a busy moment of the shared machine does not
 * fall on one side only. Without a flanneld binary its rows are skipped with
 * the reason; without a kube-apiserver the kube rows are.
 *
 *   pnpm --filter @flannel/bench kube-startup [--runs 5] [--nodes 1000] [--convergence-runs 3]
 */
import { mkdtemp, rm, stat, writeFile } from 'node:fs/promises'
import { loadavg, tmpdir } from 'node:os'
import { join } from 'node:path'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'
import { Flanneld, findFlanneld } from '@flannel/testkit/flanneld'
import { kubeSkipReason, startKubeApiserver, type KubeApiserver } from '@flannel/testkit/kube'
import {
  createTopology,
  netnsSkipReason,
  sweepStaleNamespaces,
  type NetnsHost,
  type Topology,
} from '@flannel/testkit/netns'
import { agentCli } from './lib/agent-cli.js'
import { median, rssMiB } from './lib/stats.js'
import { vxlanEntryCounts } from './lib/vxlan-entries.js'

function option(name: string, fallback: number): number {
  const args = process.argv.slice(2)
  const i = args.indexOf(name)
  const value = i >= 0 ? Number(args[i + 1]) : fallback
  return Number.isInteger(value) && value > 0 ? value : fallback
}

const RUNS = option('--runs', 5)
const NODES = option('--nodes', 1000)
const CONVERGENCE_RUNS = option('--convergence-runs', 3)
const NETWORK = '10.0.0.0/8'
const NET_CONF = JSON.stringify({ Network: NETWORK, Backend: { Type: 'vxlan' } })
const P = 'flannel.alpha.coreos.com/'
/** The own Node's podCIDR (outside the peers' 10.1.0.0 - 10.40.255.0). */
const SELF_CIDR = '10.255.0.0/24'
/** A kubelet always leaves some annotation; flanneld v0.28.10 panics on a Node with none. */
const KUBELET_ANNOTATION = { 'node.alpha.kubernetes.io/ttl': '0' }
const DEADLINE_MS = 180_000

type Impl = 'ours' | 'flanneld'
type Mode = 'kube' | 'etcd'

/** One started process of either kind. */
interface Started {
  readonly pid: number | undefined
  exited(): boolean
  output(): string
  stop(): Promise<unknown>
}

interface Env {
  readonly topology: Topology
  readonly etcd: EtcdServer
  readonly api: KubeApiserver | undefined
  readonly kubeconfig: string | undefined
  readonly dir: string
}

let runNumber = 0

function start(
  impl: Impl,
  host: NetnsHost,
  args: readonly string[],
  env: Record<string, string>,
): Started {
  if (impl === 'flanneld') {
    const f = Flanneld.start({ netns: { name: host.ns }, args, env })
    return {
      pid: f.pid,
      exited: () => f.exitCode !== null,
      output: () => f.log,
      stop: () => f.stop(),
    }
  }
  // `ip netns exec` execs node, so the pid is the agent's own.
  const p = host.spawn(process.execPath, [...agentCli().args, ...args], {
    env: { ...process.env, ...env },
  })
  return {
    pid: p.pid,
    exited: () => p.exitCode !== undefined,
    output: () => p.stderr(),
    stop: () => p.stop('SIGTERM', 5000),
  }
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

async function exists(path: string): Promise<boolean> {
  return await stat(path).then(
    () => true,
    () => false,
  )
}

function tail(text: string): string {
  return text.trim().split('\n').slice(-15).join('\n')
}

/**
 * Starts `impl` in `mode` on a fresh host, measures, stops it and removes the
 * host. `peers` > 0: also waits for that many peers' entries in the kernel.
 */
async function measure(
  e: Env,
  impl: Impl,
  mode: Mode,
  peers: number,
): Promise<{ subnetEnvMs: number; convergedMs: number | undefined; rss: number | undefined }> {
  const run = ++runNumber
  const host = await e.topology.addHost()
  const subnetFile = join(e.dir, `run-${run}.env`)
  const common = [
    `--iface=${host.iface}`,
    `--subnet-file=${subnetFile}`,
    '--ip-masq=false',
    '--iptables-forward-rules=false',
  ]
  const node = `bench-self-${run}`
  let args: string[]
  let env: Record<string, string> = {}
  if (mode === 'kube') {
    await e.api!.createNode(node, SELF_CIDR, KUBELET_ANNOTATION)
    args = [
      '--kube-subnet-mgr',
      `--kubeconfig-file=${e.kubeconfig!}`,
      `--net-config-path=${join(e.dir, 'net-conf.json')}`,
      ...common,
    ]
    env = { NODE_NAME: node }
  } else {
    const prefix = `/bench-${run}/network`
    await e.etcd.etcdctl('put', `${prefix}/config`, NET_CONF)
    args = [`--etcd-endpoints=${e.etcd.endpoints[0]!}`, `--etcd-prefix=${prefix}`, ...common]
  }
  let proc: Started | undefined
  try {
    const t0 = performance.now()
    const started = start(impl, host, args, env)
    proc = started
    /** Polls `probe` every `everyMs` until it holds; returns the time since the spawn. */
    const until = async (what: string, everyMs: number, probe: () => Promise<boolean>) => {
      for (;;) {
        if (await probe()) return performance.now() - t0
        if (started.exited())
          throw new Error(`${impl} (${mode}) exited:\n${tail(started.output())}`)
        if (performance.now() - t0 > DEADLINE_MS) {
          throw new Error(
            `${impl} (${mode}): no ${what} after ${DEADLINE_MS} ms:\n${tail(started.output())}`,
          )
        }
        await sleep(everyMs)
      }
    }
    const [subnetEnvMs, convergedMs] = await Promise.all([
      until('subnet.env', 5, () => exists(subnetFile)),
      peers === 0
        ? undefined
        : until(`entries for ${peers} peers`, 50, async () => {
            const c = await vxlanEntryCounts(host.ns).catch(() => undefined)
            return c !== undefined && c.routes >= peers && c.neigh >= peers && c.fdb >= peers
          }),
    ])
    return { subnetEnvMs, convergedMs, rss: await rssMiB(proc.pid) }
  } finally {
    await proc?.stop()
    if (mode === 'kube') await e.api!.request('DELETE', `/api/v1/nodes/${node}`)
    await e.topology.removeHost(host)
    await rm(subnetFile, { force: true })
  }
}

/** `count` peer Nodes: podCIDR 10.<1 + i/250>.<i%250>.0/24, vxlan annotations, PublicIPs in TEST-NET-2/3. */
async function createPeers(api: KubeApiserver, count: number): Promise<void> {
  let next = 0
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (next < count) {
        const i = next++
        const third = 1 + Math.floor(i / 250)
        const fourth = i % 250
        const mac = `0a:${[third >> 8, third & 255, fourth, 1, 2].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
        const publicIp = `${i % 2 === 0 ? '198.51.100' : '203.0.113'}.${(Math.floor(i / 2) % 250) + 1}`
        await api.createNode(`bench-peer-${i}`, `10.${third}.${fourth}.0/24`, {
          ...KUBELET_ANNOTATION,
          [`${P}backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
          [`${P}backend-type`]: 'vxlan',
          [`${P}kube-subnet-manager`]: 'true',
          [`${P}public-ip`]: publicIp,
        })
      }
    }),
  )
}

function fmt(values: readonly number[]): string {
  if (values.length === 0) return '-'
  return `${median(values).toFixed(0)} (${Math.min(...values).toFixed(0)}-${Math.max(...values).toFixed(0)})`
}

function order(i: number, impls: readonly Impl[]): Impl[] {
  return i % 2 === 0 ? [...impls] : [...impls].reverse()
}

async function main(): Promise<void> {
  const cannot = (await netnsSkipReason()) ?? etcdMissingReason()
  if (cannot) {
    console.log(`kube-startup: cannot run here: ${cannot}`)
    return
  }
  const kubeMissing = kubeSkipReason()
  const flanneldBin = findFlanneld()
  const impls: Impl[] = flanneldBin === undefined ? ['ours'] : ['ours', 'flanneld']
  await sweepStaleNamespaces()
  const dir = await mkdtemp(join(tmpdir(), 'bench-kube-startup-'))
  let topology: Topology | undefined
  let etcd: EtcdServer | undefined
  let api: KubeApiserver | undefined
  try {
    topology = await createTopology({ hosts: 0 })
    etcd = await startEtcd({ netns: topology.switchNs, host: topology.switchIp })
    let kubeconfig: string | undefined
    if (kubeMissing === undefined) {
      api = await startKubeApiserver({ netns: topology.switchNs, host: topology.switchIp })
      kubeconfig = await api.writeKubeconfig({ server: api.url })
    }
    await writeFile(join(dir, 'net-conf.json'), NET_CONF)
    const e: Env = { topology, etcd, api, kubeconfig, dir }
    const modes: Mode[] = kubeMissing === undefined ? ['kube', 'etcd'] : ['etcd']

    console.log(
      `kube-startup: vxlan, one namespace host per run, etcd ${etcd.endpoints[0]} and kube-apiserver in the switch namespace; ` +
        `flannel-agent from ${agentCli().from}; flanneld: ${flanneldBin ?? 'none'}`,
    )
    console.log(
      `load average at start: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    )
    if (flanneldBin === undefined) console.log('flanneld rows: skipped (no flanneld binary)')
    if (kubeMissing !== undefined) console.log(`kube rows: skipped (${kubeMissing})`)

    // Warm-up (page cache, the API server's first requests): one unmeasured start of each.
    for (const impl of impls) for (const mode of modes) await measure(e, impl, mode, 0)

    const startup = new Map<string, number[]>()
    for (let i = 0; i < RUNS; i++) {
      for (const mode of modes) {
        for (const impl of order(i, impls)) {
          const r = await measure(e, impl, mode, 0)
          const key = `${mode} ${impl}`
          startup.set(key, [...(startup.get(key) ?? []), r.subnetEnvMs])
        }
      }
    }
    console.log()
    console.log(`start -> subnet.env (ms), median (min-max) of ${RUNS}`)
    console.log('| mode | flannel-agent | flanneld v0.28.10 |')
    console.log('|---|---|---|')
    for (const mode of modes) {
      console.log(
        `| ${mode} | ${fmt(startup.get(`${mode} ours`) ?? [])} | ${fmt(startup.get(`${mode} flanneld`) ?? [])} |`,
      )
    }

    if (api === undefined) return
    const t0 = performance.now()
    await createPeers(api, NODES)
    console.log()
    console.log(`${NODES} peer Nodes created in ${(performance.now() - t0).toFixed(0)} ms`)
    const conv = new Map<Impl, { env: number[]; all: number[]; rss: number[] }>()
    for (let i = 0; i < CONVERGENCE_RUNS; i++) {
      for (const impl of order(i, impls)) {
        const r = await measure(e, impl, 'kube', NODES)
        const row = conv.get(impl) ?? { env: [], all: [], rss: [] }
        row.env.push(r.subnetEnvMs)
        if (r.convergedMs !== undefined) row.all.push(r.convergedMs)
        if (r.rss !== undefined) row.rss.push(r.rss)
        conv.set(impl, row)
        console.log(
          `  run ${i + 1} ${impl}: subnet.env ${r.subnetEnvMs.toFixed(0)} ms, all ${NODES} peers in the kernel ${r.convergedMs?.toFixed(0)} ms, RSS ${r.rss?.toFixed(0)} MiB`,
        )
      }
    }
    console.log()
    console.log(
      `kube mode, ${NODES} Nodes already in the API server: ms from start, median (min-max) of ${CONVERGENCE_RUNS}`,
    )
    console.log('| | start -> subnet.env | start -> all peers (neigh, FDB, route) | RSS (MiB) |')
    console.log('|---|---|---|---|')
    for (const impl of impls) {
      const row = conv.get(impl)!
      console.log(
        `| ${impl === 'ours' ? 'flannel-agent' : 'flanneld v0.28.10'} | ${fmt(row.env)} | ${fmt(row.all)} | ${median(row.rss).toFixed(0)} |`,
      )
    }
    console.log(
      `load average at the end: ${loadavg()
        .map((l) => l.toFixed(1))
        .join(' ')}`,
    )
  } finally {
    await api?.stop()
    await etcd?.stop()
    await topology?.destroy()
    await rm(dir, { recursive: true, force: true })
  }
}

await main()
