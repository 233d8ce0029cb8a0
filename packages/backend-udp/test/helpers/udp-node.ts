/**
 * One udp "host" as a child process inside a network namespace (run with
 * `ip netns exec <ns> node --conditions=@flannel/source --import tsx udp-node.ts '<json>'`).
 * A static registry hands out the given lease; peers arrive as lease events
 * written as JSON lines on stdin. Replies are JSON lines on stdout.
 *
 * stdin:  {"op":"add","subnet":"10.5.2.0/24","publicIP":"192.0.2.2"} | {"op":"remove","subnet":...}
 *         {"op":"counters"} | {"op":"stop"}
 * stdout: {"ready":{device,mtu,mode}} | {"counters":{...}} | {"event":...} | {"stopped":{...}} | {"error":"..."}
 * The ready line also tells which addon build runs ("addon": its path).
 */
import { createRequire } from 'node:module'
import { createInterface } from 'node:readline'
import { fileURLToPath } from 'node:url'
import {
  Ip4Net,
  parseIp4,
  parseNetworkConfig,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type SubnetRegistry,
} from '@flannel/core'
import { NEVER, Subject, type Subscription } from 'rxjs'
import { UdpBackend, type UdpLoopMode } from '../../src/index.js'

interface NodeSpec {
  network: string
  subnet: string
  iface: string
  ifaceAddr: string
  mtu: number
  mode?: UdpLoopMode
  port?: number
}

// FLANNEL_UDP_TEST_ADDON names another build of the addon (a sanitized one,
// see sanitizer.ts): it takes the package build's place in the module cache,
// so the backend loads it through its ordinary path.
const testAddon = process.env.FLANNEL_UDP_TEST_ADDON
if (testAddon) {
  const require = createRequire(import.meta.url)
  const own = fileURLToPath(new URL('../../build/Release/flannel_udp.node', import.meta.url))
  const loaded = require(testAddon) as unknown
  require.cache[own] = { id: own, filename: own, loaded: true, exports: loaded } as NodeJS.Module
}

const spec = JSON.parse(process.argv[2] ?? '{}') as NodeSpec
const out = (value: unknown): void => void process.stdout.write(JSON.stringify(value) + '\n')

function net(cidr: string): Ip4Net {
  const [ip, len] = cidr.split('/')
  return new Ip4Net(parseIp4(ip!), Number(len))
}

function lease(subnet: string, publicIP: string): Lease {
  return { subnet: net(subnet), attrs: { publicIP }, expiration: new Date(Date.now() + 86_400_000) }
}

const config = parseNetworkConfig({
  Network: spec.network,
  Backend: { Type: 'udp', ...(spec.port ? { Port: spec.port } : {}) },
})

const registry: SubnetRegistry = {
  getNetworkConfig: async () => config,
  acquireLease: async (attrs: LeaseAttrs) => ({ ...lease(spec.subnet, attrs.publicIP), attrs }),
  renewLease: async (l) => l,
  releaseLease: async () => undefined,
  watchLeases: () => NEVER,
  close: async () => undefined,
}

async function main(): Promise<void> {
  const backend = new UdpBackend(
    {
      registry,
      extIface: {
        name: spec.iface,
        index: 0,
        mtu: spec.mtu,
        ifaceAddr: spec.ifaceAddr,
        extAddr: spec.ifaceAddr,
      },
    },
    { datapath: spec.mode ?? 'offload' },
  )
  const network = await backend.registerNetwork(config)
  const events = new Subject<LeaseEvent[]>()
  const sub: Subscription = network.run(events).subscribe({
    next: (e) => out({ event: { type: e.type } }),
    error: (e) => out({ error: String(e) }),
  })
  const un = network as unknown as { device: string; mode: string; counters(): unknown }
  out({
    ready: { device: un.device, mtu: network.mtu, mode: un.mode, addon: testAddon ?? 'package' },
  })
  const rl = createInterface({ input: process.stdin })
  const stop = (): void => {
    const counters = un.counters()
    sub.unsubscribe()
    out({ stopped: counters })
    rl.close()
  }
  rl.on('line', (line) => {
    const cmd = JSON.parse(line) as { op: string; subnet?: string; publicIP?: string }
    if (cmd.op === 'add') events.next([{ type: 'added', lease: lease(cmd.subnet!, cmd.publicIP!) }])
    else if (cmd.op === 'remove')
      events.next([{ type: 'removed', lease: lease(cmd.subnet!, '0.0.0.0') }])
    else if (cmd.op === 'counters') out({ counters: un.counters() })
    else if (cmd.op === 'stop') stop()
  })
  rl.on('close', () => {
    if (!sub.closed) stop()
  })
}

main().catch((error: unknown) => {
  out({ error: error instanceof Error ? `${error.name}: ${error.message}` : String(error) })
  process.exitCode = 1
})
