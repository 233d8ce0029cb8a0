import { Etcd3, type IOptions } from 'etcd3'
import { freeLoopbackPort, startEtcd, type EtcdServer } from './launcher.js'

/** Options of {@link startEtcdCluster}. */
export interface StartEtcdClusterOptions {
  /** Number of members (default 3). */
  readonly members?: number
  /** How long each member may take to become healthy (default 30 s). */
  readonly startTimeoutMs?: number
}

/** A multi-member etcd cluster on 127.0.0.1 started by {@link startEtcdCluster}. */
export interface EtcdCluster {
  /** Every member's client URL, e.g. to pass all of them to a client. */
  readonly endpoints: string[]
  /** The members; each can be killed, restarted, paused on its own. */
  readonly members: readonly EtcdServer[]
  /** Index in {@link EtcdCluster.members} of the current leader (asked with etcdctl). */
  leader(): Promise<number>
  /** A new etcd3 client for all members; closed by `stop()`. */
  connect(options?: Partial<IOptions>): Etcd3
  /** Stops every member and removes their directories. Idempotent. */
  stop(): Promise<void>
}

/**
 * Starts an etcd cluster of `members` members (Debian's `etcd-server`, or
 * `$ETCD_BIN`) on free loopback ports, each with its own temp data dir, and
 * waits until every member serves clients (which needs a leader, so they
 * start together). Ports taken in between lead to a fresh try.
 *
 * @example
 * ```ts
 * const cluster = await startEtcdCluster({ members: 3 })
 * try {
 *   const leader = await cluster.leader()
 *   await cluster.members[leader]!.kill() // the others elect a new leader
 * } finally {
 *   await cluster.stop()
 * }
 * ```
 */
export async function startEtcdCluster(
  options: StartEtcdClusterOptions = {},
): Promise<EtcdCluster> {
  const count = options.members ?? 3
  for (let attempt = 1; ; attempt++) {
    const ports = await Promise.all(
      Array.from({ length: count }, async () => ({
        client: await freeLoopbackPort(),
        peer: await freeLoopbackPort(),
      })),
    )
    const initialCluster = ports.map((p, i) => `m${i}=http://127.0.0.1:${p.peer}`).join(',')
    const started = await Promise.allSettled(
      ports.map((p, i) =>
        startEtcd({
          name: `m${i}`,
          clientPort: p.client,
          peerPort: p.peer,
          initialCluster,
          startTimeoutMs: options.startTimeoutMs ?? 30_000,
        }),
      ),
    )
    const members = started.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []))
    if (members.length === count) return cluster(members)
    await Promise.all(members.map((m) => m.stop()))
    const failure = started.find((r) => r.status === 'rejected') as PromiseRejectedResult
    if (attempt >= 3) throw failure.reason
  }
}

function cluster(members: EtcdServer[]): EtcdCluster {
  const endpoints = members.map((m) => m.endpoints[0]!)
  const clients: Etcd3[] = []
  let stopped = false
  return {
    endpoints,
    members,
    async leader() {
      for (const [i, m] of members.entries()) {
        if (!m.running) continue
        const out = await m.etcdctl('endpoint', 'status', '-w', 'json').catch(() => '')
        // member ids are 64-bit: compared as text, JSON numbers would lose digits
        const self = /"member_id":(\d+)/.exec(out)?.[1]
        const leader = /"leader":(\d+)/.exec(out)?.[1]
        if (self !== undefined && self === leader) return i
      }
      throw new Error('no member reports itself as the leader')
    },
    connect(extra: Partial<IOptions> = {}) {
      const client = new Etcd3({ hosts: endpoints, ...extra })
      clients.push(client)
      return client
    },
    async stop() {
      if (stopped) return
      stopped = true
      for (const c of clients.splice(0)) c.close()
      await Promise.all(members.map((m) => m.stop()))
    },
  }
}
