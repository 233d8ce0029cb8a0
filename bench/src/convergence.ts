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
import { fileURLToPath } from 'node:url'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { netnsSkipReason, startCluster, sweepStaleNamespaces } from '@flannel/testkit/netns'
import { spawnProcess } from '@flannel/testkit/proc'
import { rssMiB } from './lib/stats.js'
import { vxlanEntryCounts } from './lib/vxlan-entries.js'
import { batchFloorMs } from './lib/kernel.js'

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
  const b = await batchFloorMs(n, 70)
  console.log(`| ${n} | ${a.totalMs} | ${a.afterLastMs} | ${a.rss?.toFixed(0) ?? '-'} | ${b} |`)
}
