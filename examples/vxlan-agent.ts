/**
 * The README's custom agent: etcd + vxlan, the interface chosen by flanneld's
 * rules (the default route's). As root, with a network config in etcd:
 *   etcdctl put /coreos.com/network/config '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}'
 *   pnpm --filter @flannel/examples vxlan-agent
 */
import { Agent } from '@flannel/core'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { NetlinkHostNetwork, selectExternalInterface } from '@flannel/linux'
import { vxlan } from '@flannel/backend-vxlan'

const registry = new EtcdRegistry({ endpoints: 'http://127.0.0.1:2379' })
const host = new NetlinkHostNetwork()
const agent = new Agent({
  registry,
  backends: [vxlan({ host })], // or [vxlan(), hostGw()]: the config's Backend.Type picks one
  extIface: (config) => selectExternalInterface(host, config),
  subnetFile: './subnet.env',
})
const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
for await (const e of agent.events({ signal: stop.signal }))
  if (e.type === 'ready') console.log(`ready: lease ${e.lease.subnet}, MTU ${e.mtu}`)
await Promise.all([host.close(), registry.close()])
