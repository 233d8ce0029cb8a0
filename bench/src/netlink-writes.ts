/**
 * What the kernel writes of N vxlan peers cost through our netlink layer,
 * beside the `ip -batch` / `bridge -batch` floor, in one run: the same 3 x N
 * entries (neighbour, FDB entry, onlink route) on a fresh `flannel.1` in a
 * fresh namespace host, written by `NetlinkHostNetwork` (the built
 * `@flannel/linux`) in a child process in that namespace,
 *
 *   - serial: each request awaited before the next, as the vxlan network does;
 *   - per peer at once: a peer's three requests sent together;
 *   - 64 peers at once: 192 requests in flight.
 *
 * It separates the netlink layer's share of the agent's convergence time
 * (bench `footprint`) from the rest (etcd, lease decoding, the network's own
 * work). Numbers only; nothing is asserted.
 *
 *   pnpm --filter @flannel/bench netlink-writes [--peers=5000,20000]
 */
import { fileURLToPath } from 'node:url'
import { createTopology, netnsSkipReason } from '@flannel/testkit/netns'
import { addVxlanDevice, batchFloorMs, peerEntry } from './lib/kernel.js'

type Mode = 'serial' | 'per-peer' | 'window-64'
const MODES: readonly Mode[] = ['serial', 'per-peer', 'window-64']

async function child(n: number, mode: Mode): Promise<void> {
  const { NetlinkHostNetwork } = await import('@flannel/linux')
  const host = new NetlinkHostNetwork()
  const link = await host.getLink('flannel.1')
  if (!link) throw new Error('no flannel.1 in this namespace')
  const writes = (i: number): (() => Promise<void>)[] => {
    const { net, mac, publicIp } = peerEntry(i)
    return [
      () => host.replaceNeighbour({ linkIndex: link.index, ip: net, mac }),
      () => host.replaceFdb({ linkIndex: link.index, mac, dst: publicIp }),
      () =>
        host.replaceRoute({
          family: 'inet',
          dst: `${net}/24`,
          gateway: net,
          linkIndex: link.index,
          onlink: true,
        }),
    ]
  }
  const peer = async (i: number): Promise<void> => {
    if (mode === 'serial') for (const w of writes(i)) await w()
    else await Promise.all(writes(i).map((w) => w()))
  }
  const start = performance.now()
  const window = mode === 'window-64' ? 64 : 1
  for (let i = 0; i < n; i += window) {
    const batch: Promise<void>[] = []
    for (let j = i; j < Math.min(n, i + window); j++) batch.push(peer(j))
    await Promise.all(batch)
  }
  process.stdout.write(`${Math.round(performance.now() - start)}\n`)
  await host.close()
}

async function ours(n: number, mode: Mode): Promise<number> {
  const topo = await createTopology({ hosts: 1 })
  try {
    const host = topo.hosts[0]!
    await addVxlanDevice(host)
    const proc = host.spawn(process.execPath, [
      '--import',
      'tsx',
      fileURLToPath(import.meta.url),
      '--child',
      String(n),
      mode,
    ])
    if ((await proc.exited) !== 0) throw new Error(`netlink writer failed: ${proc.stderr()}`)
    return Number(proc.stdout().trim())
  } finally {
    await topo.destroy()
  }
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2)
  if (argv[0] === '--child') return child(Number(argv[1]), argv[2] as Mode)
  const skip = await netnsSkipReason()
  if (skip) {
    console.log(`netlink-writes: skipped: ${skip}`)
    return
  }
  const peers = (argv.find((a) => a.startsWith('--peers='))?.slice(8) ?? '5000,20000')
    .split(',')
    .map(Number)
  console.log(`netlink-writes: ${new Date().toISOString()}, Node ${process.version}`)
  console.log(
    '| N | floor ip/bridge -batch (ms) | ' +
      MODES.map((m) => `${m} (ms, vs floor)`).join(' | ') +
      ' |',
  )
  console.log('|---|---|' + MODES.map(() => '---|').join(''))
  for (const n of peers) {
    const floor = await batchFloorMs(n)
    const cells: string[] = []
    for (const mode of MODES) {
      const ms = await ours(n, mode)
      cells.push(`${ms} (${(ms / floor).toFixed(2)}x)`)
    }
    console.log(`| ${n} | ${floor} | ${cells.join(' | ')} |`)
  }
}

await main()
