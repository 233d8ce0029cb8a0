import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { startCluster, type Cluster } from '../netns/index.js'
import { ALLOCATED, Flanneld, SUBNET_FILE_WRITTEN } from './index.js'

/** Options of {@link startMixedCluster}. */
export interface MixedClusterOptions {
  /** Network config JSON put at `/coreos.com/network/config`. */
  readonly config: string
  /** Give the underlay IPv6 too (dual-stack configs). */
  readonly ipv6?: boolean
  /** More `flannel-agent` flags for host 2. */
  readonly agentFlags?: readonly string[]
  /** More flanneld flags for host 1 (`--iptables-forward-rules=false` is always given). */
  readonly flanneldArgs?: readonly string[]
}

/** The subnets of one host, as `a.b.c.0/24` (and `x::/64`). */
export interface HostSubnets {
  subnet: string
  ipv6Subnet?: string | undefined
}

/**
 * Two namespace hosts on one etcd (in the switch namespace): real flanneld on
 * host 1 (`cluster.topology.hosts[0]`) and a `flannel-agent` on host 2.
 */
export interface MixedCluster {
  readonly cluster: Cluster
  /** The running flanneld, undefined while stopped. */
  readonly flanneld: Flanneld | undefined
  /** `[flanneld's host, the agent's host]`, updated by the starts. */
  readonly subnets: readonly [HostSubnets, HostSubnets]
  /** Starts flanneld on host 1 and waits for its subnet.env; returns its subnets. */
  startFlanneld(): Promise<HostSubnets>
  /** Stops flanneld (its lease and data plane stay). */
  stopFlanneld(): Promise<void>
  /** Starts the agent on host 2 and waits for its subnet.env; returns its subnets. */
  startAgent(): Promise<HostSubnets>
  /** Stops the agent with SIGTERM (its lease and data plane stay). */
  stopAgent(): Promise<void>
  /** Stops both, etcd, and removes the namespaces and files. */
  destroy(): Promise<void>
}

/** flanneld's log line for a fresh lease, or for its own lease found again after a restart. */
function leased(): RegExp {
  // built on use: index.ts re-exports this module, so its constants are not ready at load time
  return new RegExp(`${ALLOCATED.source}|Found lease \\(ip: (\\S+) ipv6: (\\S+)\\) for current IP`)
}

/**
 * Builds the two hosts and etcd, then starts flanneld on host 1 and the agent
 * on host 2, each waited for until its subnet.env is written. On failure
 * everything is removed before the error is thrown.
 *
 * @example
 * ```ts
 * const mixed = await startMixedCluster({ config: '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}' })
 * try {
 *   const [theirs, ours] = mixed.subnets
 * } finally {
 *   await mixed.destroy()
 * }
 * ```
 */
export async function startMixedCluster(options: MixedClusterOptions): Promise<MixedCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'fl-mixed-'))
  let cluster: Cluster | undefined
  let flanneld: Flanneld | undefined
  const subnets: [HostSubnets, HostSubnets] = [{ subnet: '' }, { subnet: '' }]
  const destroy = async (): Promise<void> => {
    await flanneld?.stop()
    flanneld = undefined
    await cluster?.destroy()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    cluster = await startCluster({
      hosts: 2,
      config: options.config,
      ...(options.ipv6 ? { ipv6: true } : {}),
      ...(options.agentFlags ? { agentFlags: options.agentFlags } : {}),
    })
    const c = cluster
    const mixed: MixedCluster = {
      cluster: c,
      get flanneld() {
        return flanneld
      },
      subnets,
      async startFlanneld() {
        const host = c.topology.hosts[0]!
        flanneld = Flanneld.start({
          netns: { name: host.ns },
          etcdEndpoint: c.endpoint,
          iface: host.iface,
          subnetFile: join(dir, 'flanneld.env'),
          extraArgs: ['--iptables-forward-rules=false', ...(options.flanneldArgs ?? [])],
        })
        const m = await flanneld.waitForLog(leased(), 20_000)
        await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
        const v6 = m[2] ?? m[4]
        subnets[0] = {
          subnet: (m[1] ?? m[3])!,
          ipv6Subnet: v6 === undefined || v6 === '<nil>' ? undefined : v6,
        }
        return subnets[0]
      },
      async stopFlanneld() {
        await flanneld?.stop()
        flanneld = undefined
      },
      async startAgent() {
        c.startAgent(1)
        const env = await c.waitForSubnetEnv(1)
        subnets[1] = {
          subnet: env.FLANNEL_SUBNET!.replace(/\.1\/24$/, '.0/24'),
          ipv6Subnet: env.FLANNEL_IPV6_SUBNET?.replace(/::1\/64$/, '::/64'),
        }
        return subnets[1]
      },
      async stopAgent() {
        await c.stopAgent(1)
      },
      destroy,
    }
    await mixed.startFlanneld()
    await mixed.startAgent()
    return mixed
  } catch (error) {
    await destroy()
    throw error
  }
}
