import { waitUntil, type NetnsHost } from './index.js'

/** The first address of an IPv4 subnet, where tests put a host's pod address (`10.244.3.0/24` -> `10.244.3.1`). */
export function podAddress(subnet: string): string {
  const [a, b, c] = subnet.split('/')[0]!.split('.')
  return `${a}.${b}.${c}.1`
}

/**
 * Pings from every host's pod address to every other host's (`ping -I`),
 * each pair retried for up to 8 s; returns the pairs that never answered
 * (`src -> dst`), empty when all did. `subnets[i]` belongs to `hosts[i]`.
 */
export async function pingMatrix(
  hosts: readonly NetnsHost[],
  subnets: readonly string[],
): Promise<string[]> {
  const failures: string[] = []
  await Promise.all(
    hosts.map(async (from, i) => {
      for (let j = 0; j < hosts.length; j++) {
        if (i === j) continue
        const src = podAddress(subnets[i]!)
        const dst = podAddress(subnets[j]!)
        const ok = await waitUntil(
          () =>
            from.exec('ping', ['-c1', '-W1', '-I', src, dst]).then((o) => o.includes('1 received')),
          8000,
          100,
        )
        if (!ok) failures.push(`${src} -> ${dst}`)
      }
    }),
  )
  return failures
}

/**
 * Runs a TCP echo server on each host's pod address and sends `bytes` from
 * every other host's pod address to it; returns the pairs whose bytes did not
 * all come back within 8 s (`i -> j: n bytes`, 1-based), empty when all did.
 */
export async function tcpMatrix(
  hosts: readonly NetnsHost[],
  subnets: readonly string[],
  bytes = 1 << 20,
): Promise<string[]> {
  const port = 18000 + Math.floor(Math.random() * 1000)
  const servers = hosts.map((h, i) =>
    h.spawn(process.execPath, [
      '-e',
      `require('net').createServer((s) => s.pipe(s)).listen(${port}, '${podAddress(subnets[i]!)}', () => console.log('listening'))`,
    ]),
  )
  try {
    await Promise.all(servers.map((s) => s.waitFor(/listening/)))
    const failures: string[] = []
    for (const [i, from] of hosts.entries()) {
      for (let j = 0; j < hosts.length; j++) {
        if (i === j) continue
        const client = `const c = require('net').connect({ host: '${podAddress(subnets[j]!)}', port: ${port}, localAddress: '${podAddress(subnets[i]!)}' }); let n = 0; c.on('data', (d) => { n += d.length; if (n >= ${bytes}) { console.log(n); c.destroy() } }); c.write(Buffer.alloc(${bytes}, 7)); setTimeout(() => { console.log(n); process.exit(1) }, 8000).unref()`
        const got = await from.exec(process.execPath, ['-e', client]).catch(() => '0')
        if (Number(got.trim()) !== bytes) failures.push(`${i + 1} -> ${j + 1}: ${got.trim()} bytes`)
      }
    }
    return failures
  } finally {
    await Promise.all(servers.map((s) => s.stop()))
  }
}
