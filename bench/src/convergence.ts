/**
 * vxlan convergence: one namespace host runs `flannel-agent` (vxlan) against
 * etcd on the switch; N peer leases are written to etcd; we time until every
 * peer's neighbour, FDB entry and route is in the host's kernel, and read the
 * agent's RSS. Baseline in the same run: the same N x 3 entries written
 * straight into a fresh flannel.1 with one `ip -batch` / `bridge -batch`
 * (the kernel's own cost). Numbers only; nothing is asserted.
 *
 *   pnpm --filter @flannel/bench convergence [N ...]   (default 1000 5000)
 */
import { writeFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  createTopology,
  netnsSkipReason,
  startCluster,
  sweepStaleNamespaces,
} from '@flannel/testkit/netns'
import { spawnProcess } from '@flannel/testkit/proc'
import { rssMiB } from './stats.js'
import { vxlanEntryCounts } from './vxlan-entries.js'

const WRITER = fileURLToPath(new URL('./convergence-writer.ts', import.meta.url))
const sizes = process.argv
  .slice(2)
  .map(Number)
  .filter((n) => n > 0)
const NS = sizes.length > 0 ? sizes : [1000, 5000]

async function agentRun(
  n: number,
): Promise<{ totalMs: number; afterLastMs: number; rss: number | undefined }> {
  const cluster = await startCluster({
    hosts: 1,
    config: JSON.stringify({ Network: '10.0.0.0/8', Backend: { Type: 'vxlan' } }),
  })
  try {
    const agent = cluster.startAgent(0)
    await cluster.waitForSubnetEnv(0)
    const host = cluster.topology.hosts[0]!
    const writer = spawnProcess('ip', [
      'netns',
      'exec',
      cluster.topology.switchNs,
      process.execPath,
      '--import',
      'tsx',
      WRITER,
      cluster.endpoint,
      cluster.etcdPrefix,
      String(n),
    ])
    let done = 0
    const deadline = Date.now() + 120_000
    for (;;) {
      const c = await vxlanEntryCounts(host.ns)
      if (c.routes >= n && c.neigh >= n && c.fdb >= n) {
        done = Date.now()
        break
      }
      if (agent.process.exitCode !== undefined) {
        throw new Error(`agent exited: ${agent.process.stderr()}`)
      }
      if (writer.exitCode !== undefined && writer.exitCode !== 0) {
        throw new Error(`lease writer failed: ${writer.stderr()}`)
      }
      if (Date.now() > deadline) throw new Error(`not converged after 120 s: ${JSON.stringify(c)}`)
      await new Promise((r) => setTimeout(r, 20))
    }
    await writer.exited
    const first = Number(/first (\d+)/.exec(writer.stdout())?.[1])
    const last = Number(/last (\d+)/.exec(writer.stdout())?.[1])
    // The agent's node process is the child of `ip netns exec` (same pid: ip execs it).
    const rss = await rssMiB(agent.process.pid)
    return { totalMs: done - first, afterLastMs: Math.max(0, done - last), rss }
  } finally {
    await cluster.destroy()
  }
}

async function baselineRun(n: number): Promise<number> {
  const topo = await createTopology({ hosts: 1 })
  const dir = join(tmpdir(), `conv-${topo.prefix}`)
  try {
    const host = topo.hosts[0]!
    await host.exec('ip', [
      'link',
      'add',
      'flannel.1',
      'type',
      'vxlan',
      'id',
      '1',
      'local',
      host.underlayIp,
      'dev',
      'eth0',
      'nolearning',
    ])
    await host.exec('ip', ['addr', 'add', '10.0.0.0/32', 'dev', 'flannel.1'])
    await host.exec('ip', ['link', 'set', 'flannel.1', 'up'])
    const ipLines: string[] = []
    const fdbLines: string[] = []
    for (let i = 0; i < n; i++) {
      const third = 1 + Math.floor(i / 250)
      const fourth = i % 250
      const mac = `0a:${[third >> 8, third & 255, fourth, 1, 2].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
      ipLines.push(
        `neigh replace 10.${third}.${fourth}.0 lladdr ${mac} dev flannel.1 nud permanent`,
      )
      fdbLines.push(
        `fdb replace ${mac} dev flannel.1 dst 198.51.100.${(i % 250) + 1} self permanent`,
      )
      ipLines.push(
        `route replace 10.${third}.${fourth}.0/24 via 10.${third}.${fourth}.0 dev flannel.1 onlink proto 70`,
      )
    }
    await writeFile(`${dir}-ip`, ipLines.join('\n'))
    await writeFile(`${dir}-fdb`, fdbLines.join('\n'))
    const start = Date.now()
    await host.exec('bridge', ['-batch', `${dir}-fdb`])
    await host.exec('ip', ['-batch', `${dir}-ip`])
    return Date.now() - start
  } finally {
    await rm(`${dir}-ip`, { force: true })
    await rm(`${dir}-fdb`, { force: true })
    await topo.destroy()
  }
}

const cannot = (await netnsSkipReason()) ?? etcdMissingReason()
if (cannot) {
  console.log(`convergence: cannot run here: ${cannot}`)
  process.exit(0)
}
await sweepStaleNamespaces()
console.log('vxlan convergence: one host, N peer leases written to etcd (64 writers)')
console.log(
  '| N | agent: first write -> all entries (ms) | after last write (ms) | agent RSS (MiB) | baseline ip/bridge -batch (ms) |',
)
console.log('|---|---|---|---|---|')
for (const n of NS) {
  const a = await agentRun(n)
  const b = await baselineRun(n)
  console.log(`| ${n} | ${a.totalMs} | ${a.afterLastMs} | ${a.rss?.toFixed(0) ?? '-'} | ${b} |`)
}
