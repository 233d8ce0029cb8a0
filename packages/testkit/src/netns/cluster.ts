import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startEtcd, type EtcdServer } from '../etcd/index.js'
import type { ManagedProcess } from '../proc/index.js'
import { createTopology, waitUntil, type NetnsHost, type Topology } from './index.js'

/** The agent command from source (`packages/agent/src/cli.ts`, run with tsx). */
export const AGENT_CLI = fileURLToPath(new URL('../../../agent/src/cli.ts', import.meta.url))

/** Options of {@link startCluster}. */
export interface ClusterOptions {
  /** Network config JSON put at `<prefix>/config`. */
  readonly config: string
  /** Number of hosts (default 3). */
  readonly hosts?: number
  /** etcd key prefix (default `/coreos.com/network`). */
  readonly etcdPrefix?: string
  /** More `flannel-agent` flags for every host. */
  readonly agentFlags?: readonly string[]
  /** Run prefix for the namespaces. */
  readonly prefix?: string
  /** Give the underlay IPv6 too (see `TopologyOptions.ipv6`). */
  readonly ipv6?: boolean
}

/** One `flannel-agent` process of a {@link Cluster}. */
export interface ClusterAgent {
  readonly host: NetnsHost
  readonly process: ManagedProcess
  /** Path of this host's subnet.env. */
  readonly subnetFile: string
}

/** Namespace hosts, etcd in the switch namespace and one agent per host. */
export interface Cluster {
  readonly topology: Topology
  readonly etcd: EtcdServer
  /** `http://<switch ip>:<port>`. */
  readonly endpoint: string
  readonly etcdPrefix: string
  /** Agents by host number - 1; undefined while stopped. */
  readonly agents: (ClusterAgent | undefined)[]
  /** Starts the agent of host `i` (0-based) with flanneld's flags. */
  startAgent(i: number): ClusterAgent
  /** Stops the agent of host `i` with SIGTERM (the data plane and lease stay, as with flanneld). */
  stopAgent(i: number): Promise<void>
  /** Waits until host `i` wrote its subnet.env; returns its values. */
  waitForSubnetEnv(i: number, timeoutMs?: number): Promise<Record<string, string>>
  /** The lease keys and values under `<prefix>/subnets/`. */
  leases(): Promise<{ key: string; value: string }[]>
  /** Stops the agents, etcd and removes every namespace and file. */
  destroy(): Promise<void>
}

/** Reads a subnet.env file into its key/value pairs. */
export function parseEnvFile(text: string): Record<string, string> {
  const out: Record<string, string> = {}
  for (const line of text.split('\n')) {
    const m = /^([A-Z0-9_]+)=(.*)$/.exec(line.trim())
    if (m) out[m[1]!] = m[2]!
  }
  return out
}

/**
 * Builds a topology, starts etcd on the switch address, writes the network
 * config and starts one `flannel-agent` per host under `ip netns exec` with
 * `--etcd-endpoints`, `--etcd-prefix`, `--iface=eth0` and `--subnet-file`.
 * On failure everything is torn down before the error is thrown.
 */
export async function startCluster(options: ClusterOptions): Promise<Cluster> {
  const etcdPrefix = options.etcdPrefix ?? '/coreos.com/network'
  const dir = await mkdtemp(join(tmpdir(), 'flannel-cluster-'))
  let topology: Topology | undefined
  let etcd: EtcdServer | undefined
  const agents: (ClusterAgent | undefined)[] = []
  const destroy = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a?.process.stop('SIGTERM', 3000).catch(() => undefined)))
    await etcd?.stop().catch(() => undefined)
    await topology?.destroy()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    topology = await createTopology({
      hosts: options.hosts ?? 3,
      ...(options.ipv6 ? { ipv6: true } : {}),
      ...(options.prefix ? { prefix: options.prefix } : {}),
    })
    etcd = await startEtcd({ netns: topology.switchNs, host: topology.switchIp })
    const endpoint = etcd.endpoints[0]!
    await etcd.etcdctl('put', `${etcdPrefix}/config`, options.config)
    const topo = topology
    const server = etcd
    const cluster: Cluster = {
      topology: topo,
      etcd: server,
      endpoint,
      etcdPrefix,
      agents,
      startAgent(i) {
        const host = topo.hosts[i]!
        const subnetFile = join(dir, `${host.ns}.env`)
        const proc = host.spawn(process.execPath, [
          '--conditions=@flannel/source',
          '--import',
          'tsx',
          AGENT_CLI,
          `--etcd-endpoints=${endpoint}`,
          `--etcd-prefix=${etcdPrefix}`,
          `--iface=${host.iface}`,
          `--subnet-file=${subnetFile}`,
          ...(options.agentFlags ?? []),
        ])
        const agent = { host, process: proc, subnetFile }
        agents[i] = agent
        return agent
      },
      async stopAgent(i) {
        await agents[i]?.process.stop('SIGTERM', 5000)
        agents[i] = undefined
      },
      async waitForSubnetEnv(i, timeoutMs = 20_000) {
        const agent = agents[i]
        if (!agent) throw new Error(`agent ${i} is not running`)
        const text = await waitUntil(async () => {
          if (agent.process.exitCode !== undefined) {
            throw new Error(`agent on ${agent.host.ns} exited: ${agent.process.stderr()}`)
          }
          return readFile(agent.subnetFile, 'utf8').catch(() => '')
        }, timeoutMs)
        if (!text) {
          throw new Error(
            `no subnet.env from ${agent.host.ns}; agent log:\n${agent.process.stderr()}`,
          )
        }
        return parseEnvFile(text)
      },
      async leases() {
        const out = await server.etcdctl('get', '--prefix', `${etcdPrefix}/subnets/`)
        const lines = out.trim() === '' ? [] : out.trim().split('\n')
        const rows: { key: string; value: string }[] = []
        for (let k = 0; k + 1 < lines.length; k += 2)
          rows.push({ key: lines[k]!, value: lines[k + 1]! })
        return rows
      },
      destroy,
    }
    return cluster
  } catch (error) {
    await destroy()
    throw error
  }
}
