/**
 * Many agents in one network namespace: N `flannel-agent` processes (alloc
 * backend, each with its own `--public-ip` from TEST-NET-2 and its own subnet
 * file) are started at the same moment in one namespace against one etcd, so
 * they race on etcd (lease creation) and on iptables (the same FORWARD and
 * POSTROUTING chains). Printed: how many exited, distinct leases in etcd,
 * distinct subnet files, time from the first spawn until every subnet file is
 * written, iptables commits that were retried, the FORWARD jumps left, the
 * agents' average RSS, and how many exited 0 on SIGTERM. With a flanneld
 * binary the same run is repeated with N flanneld processes as a comparison.
 * Numbers only; nothing is asserted.
 *
 *   pnpm --filter @flannel/bench agents-one-netns [N] [--ip-masq] [--agents-only]
 *
 * The agent runs from `packages/agent/dist/cli.js` when it is built
 * (`pnpm -s build`; 100 processes from source through tsx need about twice
 * the memory and start-up CPU), else from source.
 */
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'
import { Flanneld, Netns, findFlanneld, runPrefix } from '@flannel/testkit/flanneld'
import { netnsSkipReason } from '@flannel/testkit/netns'
import { spawnProcess, type ManagedProcess } from '@flannel/testkit/proc'
import { agentCli } from './lib/agent-cli.js'
import { rssMiB } from './lib/stats.js'

const args = process.argv.slice(2)
const N = Number(args.find((a) => /^\d+$/.test(a)) ?? 100)
const IP_MASQ = args.includes('--ip-masq')
const AGENTS_ONLY = args.includes('--agents-only')
const CONFIG = '{"Network":"10.64.0.0/12","Backend":{"Type":"alloc"}}'
const DEADLINE_MS = 300_000

/** A started process of either kind, as far as this bench looks at it. */
interface Started {
  readonly subnetFile: string
  readonly pid: number | undefined
  /** Exit code (or signal) once exited, null while running. */
  exitCode(): number | string | null
  /** Everything it printed. */
  output(): string
  /** SIGTERM (then SIGKILL after a grace period); resolves with the exit code or signal. */
  stop(): Promise<number | string | null>
}

interface Result {
  readonly what: string
  readonly exits: number
  readonly reasons: Map<string, number>
  readonly leases: number
  readonly leaseIps: number
  readonly files: number
  readonly fileSubnets: number
  readonly allReadyMs: number | undefined
  readonly lastReadyMs: number
  readonly retries: number | undefined
  readonly forwardJumps: number
  readonly rssMiB: number | undefined
  readonly cleanStops: number | undefined
}

function publicIp(i: number): string {
  return `198.51.100.${i + 1}`
}

function lastLine(text: string): string {
  const lines = text.trim().split('\n')
  // flanneld logs its fatal error (klog `E`/`F`) before its shutdown lines: report that one.
  const line = lines.findLast((l) => /^[EF]\d{4} /.test(l)) ?? lines.at(-1) ?? ''
  try {
    const parsed = JSON.parse(line) as { msg?: string }
    return parsed.msg ?? line
  } catch {
    // flanneld's klog lines: drop the header up to "] "
    return line.replace(/^[IWEF]\d{4} [\d:.]+\s+\d+ [^\]]+\] /, '')
  }
}

async function exists(path: string): Promise<boolean> {
  try {
    await readFile(path)
    return true
  } catch {
    return false
  }
}

function startAgent(ns: string, etcd: EtcdServer, prefix: string, dir: string, i: number): Started {
  const subnetFile = join(dir, `agent-${i}.env`)
  const proc: ManagedProcess = spawnProcess('ip', [
    'netns',
    'exec',
    ns,
    process.execPath,
    ...agentCli().args,
    `--etcd-endpoints=${etcd.endpoints.join(',')}`,
    `--etcd-prefix=${prefix}`,
    '--iface=br0',
    `--public-ip=${publicIp(i)}`,
    `--subnet-file=${subnetFile}`,
    ...(IP_MASQ ? ['--ip-masq'] : []),
  ])
  return {
    subnetFile,
    // `ip netns exec` execs node, so this is the agent's own pid.
    pid: proc.pid,
    exitCode: () => (proc.exitCode === undefined ? null : (proc.exitCode ?? 'signal')),
    output: () => proc.stderr(),
    stop: () => proc.stop('SIGTERM', 5000),
  }
}

function startFlanneld(
  ns: string,
  etcd: EtcdServer,
  prefix: string,
  dir: string,
  i: number,
): Started {
  const subnetFile = join(dir, `flanneld-${i}.env`)
  const f = Flanneld.start({
    netns: { name: ns },
    etcdEndpoint: etcd.endpoints.join(','),
    etcdPrefix: prefix,
    iface: 'br0',
    publicIp: publicIp(i),
    subnetFile,
    ipMasq: IP_MASQ,
  })
  return {
    subnetFile,
    pid: f.pid,
    exitCode: () => f.exitCode,
    output: () => f.log,
    stop: () => f.stop(),
  }
}

async function round(
  what: string,
  ns: Netns,
  etcd: EtcdServer,
  start: (prefix: string, dir: string, i: number) => Started,
  ours: boolean,
): Promise<Result> {
  const prefix = `/bench-${ours ? 'agents' : 'flanneld'}/network`
  await etcd.etcdctl('put', `${prefix}/config`, CONFIG)
  // Each run starts from empty flannel chains.
  for (const table of ['nat', 'filter']) await ns.exec('iptables', '-t', table, '-F')
  const dir = await mkdtemp(join(tmpdir(), 'bench-netns-'))
  const procs: Started[] = []
  try {
    const t0 = performance.now()
    for (let i = 0; i < N; i++) procs.push(start(prefix, dir, i))
    const readyAt = new Map<number, number>()
    while (performance.now() - t0 < DEADLINE_MS) {
      await Promise.all(
        procs.map(async (p, i) => {
          if (!readyAt.has(i) && (await exists(p.subnetFile)))
            readyAt.set(i, performance.now() - t0)
        }),
      )
      const settled = procs.every((p, i) => readyAt.has(i) || p.exitCode() !== null)
      if (settled) break
      await new Promise((r) => setTimeout(r, 100))
    }
    // Give a process that wrote its file and then failed a moment to show it.
    await new Promise((r) => setTimeout(r, 2000))
    const exited = procs.filter((p) => p.exitCode() !== null)
    const reasons = new Map<string, number>()
    for (const p of exited) {
      const reason = `exit ${String(p.exitCode())}: ${lastLine(p.output()).slice(0, 160)}`
      reasons.set(reason, (reasons.get(reason) ?? 0) + 1)
    }
    const kv = (await etcd.etcdctl('get', '--prefix', `${prefix}/subnets/`))
      .split('\n')
      .filter((l) => l !== '')
    const keys = kv.filter((l) => l.startsWith('/'))
    const ips = new Set(
      kv
        .filter((l) => l.startsWith('{'))
        .map((l) => (JSON.parse(l) as { PublicIP: string }).PublicIP),
    )
    const subnets: string[] = []
    for (const p of procs) {
      try {
        const m = /FLANNEL_SUBNET=(\S+)/.exec(await readFile(p.subnetFile, 'utf8'))
        if (m) subnets.push(m[1]!)
      } catch {
        // not written
      }
    }
    const forwardJumps = (await ns.exec('iptables-save', '-t', 'filter'))
      .split('\n')
      .filter((l) => l.startsWith('-A FORWARD ') && l.includes('FLANNEL-FWD')).length
    const running = procs.filter((p) => p.exitCode() === null)
    const rss = (await Promise.all(running.map((p) => rssMiB(p.pid)))).filter(
      (x): x is number => x !== undefined,
    )
    const retries = ours
      ? procs.reduce((sum, p) => sum + (p.output().match(/failed; retrying/g)?.length ?? 0), 0)
      : undefined
    const codes = await Promise.all(running.map((p) => p.stop()))
    const last = Math.max(0, ...readyAt.values())
    return {
      what,
      exits: exited.length,
      reasons,
      leases: keys.length,
      leaseIps: ips.size,
      files: subnets.length,
      fileSubnets: new Set(subnets).size,
      allReadyMs: readyAt.size === N ? last : undefined,
      lastReadyMs: last,
      retries,
      forwardJumps,
      rssMiB: rss.length > 0 ? rss.reduce((a, b) => a + b, 0) / rss.length : undefined,
      cleanStops: ours ? codes.filter((c) => c === 0).length : undefined,
    }
  } finally {
    await Promise.all(procs.map((p) => p.stop().catch(() => undefined)))
    await rm(dir, { recursive: true, force: true })
  }
}

async function main(): Promise<void> {
  const cannot = (await netnsSkipReason()) ?? etcdMissingReason()
  if (cannot) {
    console.log(`agents-one-netns: cannot run here: ${cannot}`)
    return
  }
  const ns = await Netns.create(`${runPrefix()}-many`)
  let etcd: EtcdServer | undefined
  try {
    await ns.addBridge('br0', '192.0.2.10/24')
    await ns.ip('route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'br0', 'onlink')
    etcd = await startEtcd({ netns: ns.name })
    const server = etcd
    const results: Result[] = []
    const agentFrom = agentCli().from
    console.log(
      `${N} processes at once in one namespace, one etcd, alloc, distinct --public-ip${IP_MASQ ? ', --ip-masq' : ''}; flannel-agent from ${agentFrom}`,
    )
    results.push(
      await round(
        'flannel-agent',
        ns,
        server,
        (prefix, dir, i) => startAgent(ns.name, server, prefix, dir, i),
        true,
      ),
    )
    const bin = findFlanneld()
    if (AGENTS_ONLY) console.log('flanneld row: skipped (--agents-only)')
    else if (bin === undefined) console.log('flanneld row: skipped (no flanneld binary)')
    else {
      results.push(
        await round(
          'flanneld v0.28.10',
          ns,
          server,
          (prefix, dir, i) => startFlanneld(ns.name, server, prefix, dir, i),
          false,
        ),
      )
    }
    console.log(
      '| processes | exited | distinct leases (keys / PublicIPs) | distinct subnet files | first spawn -> all subnet files (ms) | iptables commits retried | FORWARD jumps left | RSS per process (MiB) | exit 0 on SIGTERM |',
    )
    console.log('|---|---|---|---|---|---|---|---|---|')
    for (const r of results) {
      const ready =
        r.allReadyMs !== undefined
          ? r.allReadyMs.toFixed(0)
          : `- (last at ${r.lastReadyMs.toFixed(0)})`
      console.log(
        `| ${N} ${r.what} | ${r.exits} | ${r.leases} / ${r.leaseIps} | ${r.fileSubnets} (of ${r.files} files) | ${ready} | ${r.retries ?? '-'} | ${r.forwardJumps} | ${r.rssMiB?.toFixed(0) ?? '-'} | ${r.cleanStops ?? '-'} |`,
      )
    }
    for (const r of results) {
      for (const [reason, count] of r.reasons) console.log(`${r.what}: ${count} x ${reason}`)
    }
  } finally {
    await etcd?.stop()
    await ns.destroy()
  }
}

await main()
