/**
 * Helpers of the benches that look at one namespace host's kernel: a cheap
 * progress probe of a process's namespace and the `ip -batch` /
 * `bridge -batch` floor for N peers (counting with `ip`/`bridge`:
 * `./vxlan-entries.ts`; RSS and medians: `./stats.ts`). Peers are numbered as in
 * `./peers.ts`.
 */
import { readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { createTopology, type NetnsHost } from '@flannel/testkit/netns'
import { peerEntry } from './peers.js'

export { peerEntry }

/**
 * Cheap progress probe for a process's namespace, read from
 * `/proc/<pid>/net/{route,arp}` (no fork, so polling it steals little CPU
 * from the process being measured): IPv4 routes and ARP entries on `dev`.
 */
export async function procNetCounts(
  pid: number,
  dev = 'flannel.1',
): Promise<{ routes: number; neigh: number }> {
  const count = (text: string, field: number): number => {
    let n = 0
    for (const line of text.split('\n')) if (line.split(/\s+/)[field] === dev) n++
    return n
  }
  const [route, arp] = await Promise.all([
    readFile(`/proc/${pid}/net/route`, 'utf8').catch(() => ''),
    readFile(`/proc/${pid}/net/arp`, 'utf8').catch(() => ''),
  ])
  return { routes: count(route, 0), neigh: count(arp, 5) }
}

/**
 * The device the floor and the netlink bench write to: `flannel.1` (VNI 1, no
 * learning, on the host's eth0) with 10.0.0.0/32, up, as flanneld leaves it.
 */
export async function addVxlanDevice(host: NetnsHost): Promise<void> {
  await host.exec('ip', [
    'link',
    'add',
    'flannel.1',
    'type',
    'vxlan',
    'id',
    '1',
    'local',
    host.underlayIp,
    'dev',
    'eth0',
    'nolearning',
  ])
  await host.exec('ip', ['addr', 'add', '10.0.0.0/32', 'dev', 'flannel.1'])
  await host.exec('ip', ['link', 'set', 'flannel.1', 'up'])
}

/**
 * The kernel's own cost of N peers: a fresh `flannel.1` in a fresh namespace
 * host, then the same N x 3 entries as the agent writes (neighbour, FDB
 * entry, onlink route) by one `bridge -batch` and one `ip -batch`. Returns
 * the milliseconds of the two batch commands.
 */
export async function batchFloorMs(n: number, routeProtocol?: number): Promise<number> {
  const topo = await createTopology({ hosts: 1 })
  const dir = join(tmpdir(), `batch-${topo.prefix}`)
  try {
    const host = topo.hosts[0]!
    await addVxlanDevice(host)
    const ipLines: string[] = []
    const fdbLines: string[] = []
    const proto = routeProtocol === undefined ? '' : ` proto ${routeProtocol}`
    for (let i = 0; i < n; i++) {
      const { net, mac, publicIp } = peerEntry(i)
      ipLines.push(`neigh replace ${net} lladdr ${mac} dev flannel.1 nud permanent`)
      fdbLines.push(`fdb replace ${mac} dev flannel.1 dst ${publicIp} self permanent`)
      ipLines.push(`route replace ${net}/24 via ${net} dev flannel.1 onlink${proto}`)
    }
    await writeFile(`${dir}-ip`, ipLines.join('\n'))
    await writeFile(`${dir}-fdb`, fdbLines.join('\n'))
    const start = Date.now()
    await host.exec('bridge', ['-batch', `${dir}-fdb`])
    await host.exec('ip', ['-batch', `${dir}-ip`])
    return Date.now() - start
  } finally {
    await rm(`${dir}-ip`, { force: true })
    await rm(`${dir}-fdb`, { force: true })
    await topo.destroy()
  }
}
