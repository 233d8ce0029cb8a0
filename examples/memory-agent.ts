/**
 * The README's custom agent (vxlan-agent.ts) in one process, nothing changed
 * but the two pieces that touch the outside: a MemoryRegistry for etcd and a
 * MemoryHostNetwork for the kernel. Two such hosts share the registry; each
 * writes the other's subnet into its own (in-memory) flannel.1. No root.
 *
 *   pnpm --filter @flannel/examples memory-agent
 */
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { concatMap, filter, firstValueFrom, merge, of } from 'rxjs'
import { Agent, MemoryRegistry } from '@flannel/core'
import { selectExternalInterface } from '@flannel/linux'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { vxlan } from '@flannel/backend-vxlan'

const registry = new MemoryRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan' } })
const dir = await mkdtemp(join(tmpdir(), 'flannel-memory-agent-'))

/** A host with eth0 on TEST-NET-1 and its default route, as selectExternalInterface expects. */
async function memoryHost(address: string): Promise<MemoryHostNetwork> {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0' }] })
  const eth0 = (await host.getLink('eth0'))!
  await host.addAddress({ linkIndex: eth0.index, family: 'inet', address, prefixLength: 24 })
  await host.addRoute({
    family: 'inet',
    dst: '0.0.0.0/0',
    gateway: '192.0.2.1',
    linkIndex: eth0.index,
  })
  return host
}

const stop = new AbortController()
process.once('SIGINT', () => stop.abort())
const hosts = await Promise.all(['192.0.2.10', '192.0.2.20'].map(memoryHost))
const agents = hosts.map(
  (host, i) =>
    new Agent({
      registry,
      backends: [vxlan({ host, procSys: false })], // procSys: no /proc/sys on a host in memory
      extIface: (config) => selectExternalInterface(host, config),
      subnetFile: join(dir, `subnet-${i}.env`),
    }),
)

/** Resolves when `host`'s flannel.1 routes `subnet` (checked now and on each route change). */
function routed(host: MemoryHostNetwork, subnet: string): Promise<unknown> {
  const check = async (): Promise<boolean> => {
    const dev = await host.getLink('flannel.1')
    return (
      dev !== undefined &&
      (await host.listRoutes({ linkIndex: dev.index })).some((r) => r.dst === subnet)
    )
  }
  return firstValueFrom(
    merge(of(null), host.notifications(['route'])).pipe(concatMap(check), filter(Boolean)),
  )
}

try {
  for (const agent of agents) agent.run({ signal: stop.signal }).subscribe({ error: console.error })
  const [a, b] = await Promise.all(agents.map((agent) => agent.ready()))
  console.log(`host 1: lease ${a!.lease.subnet}, MTU ${a!.mtu}`)
  console.log(`host 2: lease ${b!.lease.subnet}, MTU ${b!.mtu}`)
  await Promise.all([
    routed(hosts[0]!, b!.lease.subnet.toString()),
    routed(hosts[1]!, a!.lease.subnet.toString()),
  ])
  for (const [i, host] of hosts.entries()) {
    const dev = (await host.getLink('flannel.1'))!
    for (const r of await host.listRoutes({ linkIndex: dev.index }))
      if (r.gateway)
        console.log(`host ${i + 1}: route ${r.dst} via ${r.gateway} dev flannel.1 onlink`)
  }
} finally {
  stop.abort()
  await rm(dir, { recursive: true, force: true })
}
