/**
 * Full stack against real flanneld, for host-gw and vxlan: flanneld on host
 * 1, our Agent (EtcdRegistry + HostGwBackend / VxlanBackend) on host 2, one
 * etcd (interop.md 2, items 18, 20, 23, 24). Checks the route each host has to
 * the other, ping both ways, and that restarting either side keeps its subnet
 * and connectivity. Skipped with a printed reason when no flanneld binary is
 * available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import type { Subscription } from 'rxjs'
import { Agent, type AgentEvent, type BackendFactory, type ExternalInterface } from '@flannel/core'
import { EtcdRegistry } from '@flannel/registry-etcd'
import type { Netns } from '@flannel/testkit/flanneld'
import {
  bridgedHosts,
  ALLOCATED,
  Flanneld,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'
import { RemoteHostNetwork } from '../../linux/test/helpers/netns.js'
import { hostGw } from '@flannel/backend-hostgw'
import { vxlan } from '@flannel/backend-vxlan'

type Factory = (host: RemoteHostNetwork) => BackendFactory

const baseSkip = interopSkipReason()
const CASES: readonly {
  type: string
  skip: string | undefined
  factory: Factory
  /**
   * The route a host has to the other's subnet (`peer` = the other's PublicIP).
   * Our backends add `proto <n>` (their own route protocol); flanneld's routes show none.
   */
  route: (subnet: string, peer: string) => RegExp
}[] = [
  {
    type: 'host-gw',
    skip: baseSkip,
    factory: (host) => hostGw({ host }),
    route: (subnet, peer) => new RegExp(`^${esc(subnet)} via ${esc(peer)} dev eth0`),
  },
  {
    type: 'vxlan',
    skip: baseSkip,
    // procSys: false, as accept_ra would be written in this process's namespace, not host 2's
    factory: (host) => vxlan({ host, procSys: false }),
    route: (subnet) =>
      new RegExp(
        `^${esc(subnet)} via ${esc(subnet.split('/')[0]!)} dev flannel\\.1( proto \\S+)? onlink`,
      ),
  },
]

function esc(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')
}

for (const c of CASES) if (c.skip) console.warn(`interop-fullstack ${c.type}: skipped: ${c.skip}`)

describe.each(CASES)('$type', ({ type, skip, factory, route: expectedRoute }) => {
  describe.skipIf(skip !== undefined)(
    `${type}: real flanneld and our Agent${skip ? ` (skipped: ${skip})` : ''}`,
    () => {
      const PREFIX = `/fullstack-${type}/network`
      const p = runPrefix()
      let etcd: InteropEtcd
      const spaces: Netns[] = []
      let h1: Netns
      let h2: Netns
      let host2: RemoteHostNetwork | undefined
      let ext2: ExternalInterface
      let flanneld: Flanneld | undefined
      let dir: string
      let flannelSubnet: string
      let ourSubnet: string
      let agentRun: { sub: Subscription; stop: AbortController; registry: EtcdRegistry } | undefined

      async function startFlanneld(): Promise<string> {
        flanneld = Flanneld.start({
          netns: h1,
          etcdEndpoint: etcd.socketEndpoint,
          etcdPrefix: PREFIX,
          iface: 'eth0',
          subnetFile: join(dir, 'h1.env'),
          extraArgs: ['--iptables-forward-rules=false'],
        })
        // a fresh allocation, or (after a restart) reuse of its lease
        const m = await flanneld.waitForLog(
          new RegExp(`${ALLOCATED.source}|Found lease \\(ip: (\\S+) ipv6: \\S+\\) for current IP`),
        )
        const subnet = (m[1] ?? m[3])!
        await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
        return subnet
      }

      async function startAgent(): Promise<string> {
        const registry = new EtcdRegistry({ endpoints: etcd.clientUrl, prefix: PREFIX })
        const agent = new Agent({
          registry,
          backends: [factory(host2!)],
          extIface: ext2,
          subnetFile: join(dir, 'h2.env'),
        })
        const stop = new AbortController()
        const events: AgentEvent[] = []
        let failure: unknown
        const sub = agent.run({ signal: stop.signal }).subscribe({
          next: (e) => events.push(e),
          error: (e: unknown) => (failure = e),
        })
        agentRun = { sub, stop, registry }
        const deadline = Date.now() + 15_000
        for (;;) {
          const ready = events.find((e) => e.type === 'ready')
          if (ready?.type === 'ready') return ready.lease.subnet.toString()
          if (failure !== undefined) throw failure as Error
          if (Date.now() > deadline) throw new Error('agent not ready in 15 s')
          await new Promise((r) => setTimeout(r, 50))
        }
      }

      async function stopAgent(): Promise<void> {
        if (!agentRun) return
        agentRun.stop.abort()
        agentRun.sub.unsubscribe()
        await agentRun.registry.close()
        agentRun = undefined
      }

      async function route(
        ns: Netns,
        subnet: string,
        want: (out: string) => boolean,
      ): Promise<string> {
        const deadline = Date.now() + 8000
        for (;;) {
          const out = (await ns.ip('route', 'show', subnet)).trim()
          if (want(out) || Date.now() > deadline) return out
          await new Promise((r) => setTimeout(r, 100))
        }
      }

      async function pingBothWays(): Promise<void> {
        const ours = ourSubnet.replace(/\.0\/24$/, '.1')
        const theirs = flannelSubnet.replace(/\.0\/24$/, '.1')
        expect(await h1.exec('ping', '-c', '1', '-W', '2', '-I', theirs, ours)).toContain(
          '1 received',
        )
        expect(await h2.exec('ping', '-c', '1', '-W', '2', '-I', ours, theirs)).toContain(
          '1 received',
        )
      }

      beforeAll(async () => {
        dir = await mkdtemp(join(tmpdir(), 'fl-interop-hgagent-'))
        etcd = await startInteropEtcd()
        await etcd
          .connect()
          .put(`${PREFIX}/config`)
          .value(`{"Network":"10.244.0.0/16","Backend":{"Type":"${type}"}}`)
        ;[, h1, h2] = (await bridgedHosts(p, 2, spaces)) as [Netns, Netns, Netns]
        host2 = new RemoteHostNetwork(h2.name)
        await host2.start()
        const eth = (await host2.getLink('eth0'))!
        ext2 = {
          name: 'eth0',
          index: eth.index,
          mtu: eth.mtu,
          ifaceAddr: '192.0.2.2',
          extAddr: '192.0.2.2',
        }

        flannelSubnet = await startFlanneld()
        ourSubnet = await startAgent()
        for (const [ns, subnet] of [
          [h1, flannelSubnet],
          [h2, ourSubnet],
        ] as const) {
          await ns.ip('link', 'add', 'cni0', 'type', 'bridge')
          await ns.ip('addr', 'add', subnet.replace(/\.0\/24$/, '.1/24'), 'dev', 'cni0')
          await ns.ip('link', 'set', 'cni0', 'up')
        }
      }, 60_000)

      afterAll(async () => {
        await stopAgent()
        await host2?.close()
        await flanneld?.stop()
        for (const ns of spaces.reverse()) await ns.destroy()
        await etcd?.stop()
        if (dir) await rm(dir, { recursive: true, force: true })
      })

      it('each host routes the other subnet as flanneld does; traffic flows both ways (items 18, 20, 23)', async () => {
        expect(await route(h1, ourSubnet, (o) => o !== '')).toMatch(
          expectedRoute(ourSubnet, '192.0.2.2'),
        )
        expect(await route(h2, flannelSubnet, (o) => o !== '')).toMatch(
          expectedRoute(flannelSubnet, '192.0.2.1'),
        )
        await pingBothWays()
      })

      it('our agent restarted keeps its subnet; traffic returns (item 24)', async () => {
        await stopAgent()
        expect(await startAgent()).toBe(ourSubnet)
        await route(h2, flannelSubnet, (o) => o !== '')
        await pingBothWays()
      })

      it('flanneld restarted keeps its subnet; traffic returns (item 24)', async () => {
        await flanneld!.stop()
        expect(await startFlanneld()).toBe(flannelSubnet)
        await route(h1, ourSubnet, (o) => o !== '')
        await pingBothWays()
      })
    },
  )
})
