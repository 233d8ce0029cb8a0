/**
 * In-process simulation: three "hosts" (three Agents in one process) share
 * one real etcd (started on loopback for the run). Each host gets a subnet
 * lease and sees the others' leases come and go. Nothing on this machine's
 * network is changed: the backend here only prints what a real one would do.
 *
 *   pnpm --filter @flannel/examples simulate
 */
import type { Observable } from 'rxjs'
import { map, mergeMap, from, type Subscription } from 'rxjs'
import {
  Agent,
  defineBackend,
  type AgentEvent,
  type Backend,
  type BackendContext,
  type LeaseEvent,
  type Network,
  type NetworkConfig,
  type NetworkEvent,
  type RegisterOptions,
} from '@flannel/core'
import { AllocBackend } from '@flannel/backend-alloc'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { startEtcd } from '@flannel/testkit/etcd'

/** alloc's lease, plus a run() that reports each peer event as "applied" (a real backend would route). */
class PrintBackend implements Backend {
  readonly type = 'alloc'
  constructor(private readonly ctx: BackendContext) {}
  async registerNetwork(config: NetworkConfig, opts?: RegisterOptions): Promise<Network> {
    const network = await new AllocBackend(this.ctx).registerNetwork(config, opts)
    return {
      lease: network.lease,
      mtu: network.mtu,
      run: (events: Observable<LeaseEvent[]>): Observable<NetworkEvent> =>
        events.pipe(
          mergeMap((batch) => from(batch)),
          map((e) => ({
            type: 'applied' as const,
            action: e.type === 'added' ? ('add' as const) : ('remove' as const),
            lease: e.lease,
          })),
        ),
    }
  }
}

const etcd = await startEtcd()
const hosts: { name: string; registry: EtcdRegistry; agent: Agent; sub?: Subscription }[] = []
const settle = (ms = 300): Promise<void> => new Promise((r) => setTimeout(r, ms))

try {
  const config = '{"Network":"10.5.0.0/16","SubnetLen":24,"Backend":{"Type":"alloc"}}'
  await etcd.etcdctl('put', '/coreos.com/network/config', config)
  console.log(`etcd at ${etcd.endpoints.join(',')}; config ${config}\n`)

  for (const [i, name] of ['host-a', 'host-b', 'host-c'].entries()) {
    const registry = new EtcdRegistry({ endpoints: etcd.endpoints })
    const agent = new Agent({
      registry,
      backends: [defineBackend('alloc', (ctx) => new PrintBackend(ctx))],
      extIface: { name: 'eth0', index: 2, mtu: 1500, extAddr: `192.0.2.${11 + i}` },
      subnetFile: null,
    })
    const host: (typeof hosts)[number] = { name, registry, agent }
    hosts.push(host)
    host.sub = agent.run().subscribe({
      next: (e: AgentEvent) => {
        if (e.type === 'ready') console.log(`${name}: ready, lease ${e.lease.subnet} MTU ${e.mtu}`)
        if (e.type === 'network' && e.event.type === 'applied') {
          const l = e.event.lease
          console.log(`${name}: ${e.event.action} peer ${l.subnet} via ${l.attrs.publicIP}`)
        }
      },
      error: (err: unknown) => console.log(`${name}: stopped: ${String(err)}`),
    })
    await agent.ready()
    await settle() // let the others see it before the next host starts
  }

  console.log('\nlease table (etcd):')
  const keys = await etcd.etcdctl('get', '--prefix', '/coreos.com/network/subnets/')
  const lines = keys.trim().split('\n')
  for (let i = 0; i + 1 < lines.length; i += 2) console.log(`  ${lines[i]}  ${lines[i + 1]}`)

  const c = hosts[2]!
  console.log(`\noperator deletes ${c.name}'s lease ${c.agent.lease?.subnet}:`)
  await etcd.etcdctl('del', `/coreos.com/network/subnets/${c.agent.lease!.subnet.toKey()}`)
  await settle()
} finally {
  for (const h of hosts) {
    h.sub?.unsubscribe()
    await h.registry.close()
  }
  await etcd.stop()
}
console.log('\ndone: all agents stopped, etcd stopped.')
