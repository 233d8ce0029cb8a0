/**
 * The three-host vxlan demo on real kernel devices: three hosts as network
 * namespaces on a TEST-NET underlay (192.0.2.0/24), etcd on the switch,
 * one `flannel-agent` per host (flanneld's flags), then the lease table, each
 * host's vxlan entries, a ping matrix between the hosts' pod addresses, and a
 * host leaving. Everything is torn down at the end, on error and on Ctrl-C.
 *
 * Run as root: `pnpm --filter @flannel/examples run three-hosts-vxlan`.
 * Without root (or without etcd) it says why and runs the in-process
 * simulation instead.
 */
import { etcdMissingReason } from '@flannel/testkit/etcd'
import {
  netnsSkipReason,
  podAddress,
  readFdb,
  readNeighbours,
  readRoutes,
  startCluster,
  sweepStaleNamespaces,
  waitUntil,
  type Cluster,
} from '@flannel/testkit/netns'

const CONFIG = { Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }

const cannot = (await netnsSkipReason()) ?? etcdMissingReason()
if (cannot) {
  console.log(`three-hosts-vxlan needs root, iproute2 and etcd: ${cannot}.`)
  console.log('Running the in-process simulation instead.\n')
  await import('../simulate.js')
} else {
  await demo()
}

async function demo(): Promise<void> {
  let cluster: Cluster | undefined
  let stopping = false
  const teardown = async (why: string) => {
    if (stopping) return
    stopping = true
    console.log(`\n${why}: stopping agents and etcd, removing namespaces...`)
    await cluster?.destroy()
    console.log('done: nothing left behind.')
  }
  const onSignal = (signal: NodeJS.Signals) => {
    void teardown(`${signal} received`).finally(() => process.exit(130))
  }
  process.once('SIGINT', onSignal)
  process.once('SIGTERM', onSignal)

  try {
    await sweepStaleNamespaces()
    console.log(
      '1. building three hosts (network namespaces) on 192.0.2.0/24, etcd on the switch...',
    )
    cluster = await startCluster({ config: JSON.stringify(CONFIG) })
    const hosts = cluster.topology.hosts
    console.log(`   etcd at ${cluster.endpoint}; network config ${JSON.stringify(CONFIG)}`)
    for (const h of hosts) console.log(`   ${h.ns}: eth0 ${h.underlayIp}/24`)

    console.log('\n2. starting flannel-agent on each host:')
    console.log(
      `   ip netns exec <host> flannel-agent --etcd-endpoints=${cluster.endpoint} --iface=eth0 --subnet-file=...`,
    )
    hosts.forEach((_, i) => cluster!.startAgent(i))
    const subnets: string[] = []
    for (const [i, h] of hosts.entries()) {
      const env = await cluster.waitForSubnetEnv(i)
      const [addr, len] = env.FLANNEL_SUBNET!.split('/')
      subnets.push(`${addr!.replace(/\.\d+$/, '.0')}/${len}`)
      await h.addPodAddress(env.FLANNEL_SUBNET!)
      console.log(
        `   ${h.ns}: FLANNEL_SUBNET=${env.FLANNEL_SUBNET} FLANNEL_MTU=${env.FLANNEL_MTU} (pod address on cni0)`,
      )
    }

    console.log('\n3. lease table in etcd:')
    for (const l of await cluster.leases()) console.log(`   ${l.key}\n     ${l.value}`)

    console.log('\n4. what each agent programmed on flannel.1 (neighbour, FDB, route per peer):')
    for (const h of hosts) {
      await waitUntil(
        async () => (await readRoutes(h.ns, { dev: 'flannel.1' })).length === hosts.length - 1,
      )
      console.log(`   ${h.ns}:`)
      for (const r of await readRoutes(h.ns, { dev: 'flannel.1' })) {
        console.log(
          `     route ${r.dst} via ${r.gateway} dev flannel.1 ${r.flags?.join(' ') ?? ''}`,
        )
      }
      for (const n of await readNeighbours(h.ns, 'flannel.1')) {
        console.log(`     neigh ${n.dst} lladdr ${n.lladdr} ${n.state?.join(' ') ?? ''}`)
      }
      for (const f of await readFdb(h.ns, 'flannel.1')) {
        console.log(`     fdb   ${f.mac} dst ${f.dst} ${f.flags?.join(' ') ?? ''} ${f.state ?? ''}`)
      }
    }

    console.log('\n5. ping matrix between pod addresses (through the VXLAN tunnels):')
    for (const [i, from] of hosts.entries()) {
      const cells: string[] = []
      for (const [j] of hosts.entries()) {
        if (i === j) {
          cells.push('     -      ')
          continue
        }
        const out = await waitUntil(
          () =>
            from
              .exec('ping', ['-c1', '-W1', '-I', podAddress(subnets[i]!), podAddress(subnets[j]!)])
              .catch(() => ''),
          5000,
          100,
        )
        const rtt = /time=([\d.]+) ms/.exec(out)?.[1]
        cells.push(rtt ? `ok ${rtt.padStart(6)} ms` : '   FAILED    ')
        if (!rtt) process.exitCode = 1
      }
      console.log(`   ${podAddress(subnets[i]!).padEnd(12)} -> ${cells.join(' | ')}`)
    }

    const leaving = hosts[2]!
    console.log(`\n6. ${leaving.ns} leaves: its agent stops and its lease is deleted from etcd...`)
    await cluster.stopAgent(2)
    await cluster.etcd.etcdctl(
      'del',
      `${cluster.etcdPrefix}/subnets/${subnets[2]!.replace('/', '-')}`,
    )
    for (const h of hosts.slice(0, 2)) {
      await waitUntil(
        async () =>
          !(await readRoutes(h.ns, { dev: 'flannel.1' })).some((r) => r.dst === subnets[2]),
      )
      const left = (await readRoutes(h.ns, { dev: 'flannel.1' })).map((r) => r.dst)
      console.log(`   ${h.ns}: routes on flannel.1 now ${left.join(', ')}`)
    }
  } finally {
    await teardown('demo finished')
  }
}
