/**
 * A custom node agent in ~30 lines: flannel's etcd registry and one backend
 * (alloc: this host gets a subnet lease; routing is left to something else).
 *
 *   ETCD_ENDPOINTS=http://127.0.0.1:2379 pnpm --filter @flannel/examples custom-agent
 *
 * Needs a network config at /coreos.com/network/config, e.g.
 *   etcdctl put /coreos.com/network/config '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}'
 * Stop with Ctrl-C: the lease stays in etcd until it expires or is renewed.
 */
import { Agent } from '@flannel/core'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { alloc } from '@flannel/backend-alloc'

const registry = new EtcdRegistry({
  endpoints: process.env.ETCD_ENDPOINTS ?? 'http://127.0.0.1:2379',
})
const agent = new Agent({
  registry,
  backends: [alloc()], // add e.g. vxlan() from @flannel/backend-vxlan: the config's Type picks one
  extIface: { name: 'eth0', index: 2, mtu: 1500, extAddr: process.env.PUBLIC_IP ?? '192.0.2.10' },
  subnetFile: process.env.SUBNET_FILE ?? './subnet.env',
})

const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
process.once('SIGTERM', () => stop.abort())

try {
  // Runs the agent until stop aborts; leaving the loop would stop it too.
  for await (const event of agent.events({ signal: stop.signal })) {
    if (event.type === 'ready') console.log(`ready: lease ${event.lease.subnet}, MTU ${event.mtu}`)
    if (event.type === 'renewed')
      console.log(`renewed until ${event.lease.expiration.toISOString()}`)
  }
  console.log('stopped')
} catch (error) {
  console.error(String(error)) // e.g. LeaseRevokedError
  process.exitCode = 1
} finally {
  await registry.close()
}
