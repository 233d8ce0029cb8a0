/**
 * A flanneld-format peer without flannel: a plain UDP socket that sends raw
 * IPv4 packets as the whole datagram payload and reports what comes back.
 * Argument (JSON): { bind, port, to, toPort, sends: [{ hex, fromPort? }], listenMs }
 * Output: {"report":{"received":[{ from, port, hex }]}}
 */
import { createSocket, type Socket } from 'node:dgram'

interface Plan {
  bind: string
  port: number
  to: string
  toPort: number
  sends: { hex: string; fromPort?: number }[]
  listenMs: number
}

const plan = JSON.parse(process.argv[2] ?? '{}') as Plan
const received: { from: string; port: number; hex: string }[] = []

function bound(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    s.once('error', reject)
    s.bind(port, plan.bind, () => resolve(s))
  })
}

const main = bound(plan.port).then(async (sock) => {
  sock.on('message', (msg, rinfo) =>
    received.push({ from: rinfo.address, port: rinfo.port, hex: msg.toString('hex') }),
  )
  for (const s of plan.sends) {
    const from = s.fromPort && s.fromPort !== plan.port ? await bound(s.fromPort) : sock
    await new Promise<void>((resolve, reject) =>
      from.send(Buffer.from(s.hex, 'hex'), plan.toPort, plan.to, (e) =>
        e ? reject(e) : resolve(),
      ),
    )
    if (from !== sock) from.close()
  }
  await new Promise((r) => setTimeout(r, plan.listenMs))
  sock.close()
  process.stdout.write(JSON.stringify({ report: { received } }) + '\n')
})
main.catch((error: unknown) => {
  process.stdout.write(JSON.stringify({ error: String(error) }) + '\n')
  process.exitCode = 1
})
