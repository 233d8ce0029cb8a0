/**
 * Allocation contention: N registry instances (one etcd client each, as N
 * hosts would have) acquire leases at the same moment on one real etcd.
 * Prints the time until all hold distinct leases and how many lost create
 * races were retried, next to a baseline of the same N acquiring one after
 * another. Numbers only; nothing is asserted.
 *
 *   pnpm --filter @flannel/bench alloc-contention [N ...]   (default 10 100 500)
 */
import { EtcdRegistry } from '@flannel/registry-etcd'
import { etcdMissingReason, startEtcd } from '@flannel/testkit/etcd'

const CONFIG = '{"Network":"10.64.0.0/12","Backend":{"Type":"alloc"}}'

interface Run {
  readonly mode: string
  readonly n: number
  readonly ms: number
  readonly retries: number
  readonly distinct: number
}

function hostIp(i: number): string {
  return `198.51.${100 + Math.floor(i / 250)}.${(i % 250) + 1}`
}

async function round(
  endpoints: string[],
  prefix: string,
  n: number,
  concurrent: boolean,
): Promise<Run> {
  const registries = Array.from({ length: n }, () => new EtcdRegistry({ endpoints, prefix }))
  try {
    // Connect every client first, so the timing covers acquisition only.
    await Promise.all(registries.map((r) => r.getNetworkConfig()))
    const start = performance.now()
    const leases = concurrent
      ? await Promise.all(registries.map((r, i) => r.acquireLease({ publicIP: hostIp(i) })))
      : await registries.reduce<Promise<Awaited<ReturnType<EtcdRegistry['acquireLease']>>[]>>(
          async (acc, r, i) => [...(await acc), await r.acquireLease({ publicIP: hostIp(i) })],
          Promise.resolve([]),
        )
    const ms = performance.now() - start
    return {
      mode: concurrent ? 'concurrent' : 'sequential',
      n,
      ms,
      retries: registries.reduce((sum, r) => sum + r.stats.createConflicts, 0),
      distinct: new Set(leases.map((l) => l.subnet.toString())).size,
    }
  } finally {
    await Promise.all(registries.map((r) => r.close()))
  }
}

async function main(): Promise<void> {
  const missing = etcdMissingReason()
  if (missing !== undefined) {
    console.log(`alloc-contention skipped: ${missing}`)
    return
  }
  const sizes = process.argv
    .slice(2)
    .map(Number)
    .filter((n) => n > 0)
  const ns = sizes.length > 0 ? sizes : [10, 100, 500]
  const etcd = await startEtcd()
  const raw = etcd.connect()
  const runs: Run[] = []
  try {
    let k = 0
    for (const n of ns) {
      for (const concurrent of [false, true]) {
        const prefix = `/bench${++k}/network`
        await raw.put(`${prefix}/config`).value(CONFIG)
        const run = await round(etcd.endpoints, prefix, n, concurrent)
        runs.push(run)
        console.log(
          `${run.mode.padEnd(10)} N=${String(n).padStart(4)}  ${run.ms.toFixed(0).padStart(6)} ms  ` +
            `${(run.ms / n).toFixed(2).padStart(6)} ms/lease  retries ${String(run.retries).padStart(5)}  ` +
            `distinct ${run.distinct}/${n}`,
        )
      }
    }
  } finally {
    await etcd.stop()
  }
  console.log('\n| N | sequential (ms) | concurrent (ms) | concurrent retries | distinct |')
  console.log('|---|---|---|---|---|')
  for (const n of ns) {
    const seq = runs.find((r) => r.n === n && r.mode === 'sequential')!
    const con = runs.find((r) => r.n === n && r.mode === 'concurrent')!
    console.log(
      `| ${n} | ${seq.ms.toFixed(0)} | ${con.ms.toFixed(0)} | ${con.retries} | ${con.distinct}/${n} |`,
    )
  }
}

await main()
