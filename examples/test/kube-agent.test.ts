import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
} from '@flannel/testkit/kube'
import {
  createTopology,
  netnsSkipReason,
  readFdb,
  readLinks,
  waitUntil,
  type Topology,
} from '@flannel/testkit/netns'
import type { ManagedProcess } from '@flannel/testkit/proc'
import { EXAMPLE_NODE_ARGS, EXAMPLES_DIR } from './run-example.js'

const skip = kubeSkipReason() ?? (await netnsSkipReason())
if (skip) console.warn(`examples/kube-agent.ts test skipped: ${skip}`)

const P = 'flannel.alpha.coreos.com/'

describe.skipIf(skip)(`examples/kube-agent.ts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let topology: Topology
  let api: KubeApiserver
  let dir: string
  const agents: ManagedProcess[] = []

  beforeAll(async () => {
    topology = await createTopology({ hosts: 2 })
    api = await startKubeApiserver({ netns: topology.switchNs, host: topology.switchIp })
    dir = await mkdtemp(join(tmpdir(), 'flex-kube-'))
  }, 120_000)
  afterAll(async () => {
    for (const a of agents) await a.stop().catch(() => undefined)
    await api?.stop()
    await topology?.destroy()
    await rm(dir, { recursive: true, force: true })
  })

  it('two hosts on KubeRegistry + vxlan: podCIDR leases, annotations, the condition and each other as peers', async () => {
    const netConf = join(dir, 'net-conf.json')
    await writeFile(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}')
    const kubeconfig = await api.writeKubeconfig({ server: api.url })
    for (const host of topology.hosts) {
      const node = `${topology.prefix}-h${host.n}`
      await api.createNode(node, `10.244.${host.n}.0/24`)
      const agent = host.spawn(process.execPath, [...EXAMPLE_NODE_ARGS, 'kube-agent.ts'], {
        cwd: EXAMPLES_DIR,
        env: {
          ...process.env,
          NODE_NAME: node,
          KUBECONFIG_FILE: kubeconfig,
          NET_CONF: netConf,
          IFACE: host.iface,
          SUBNET_FILE: join(dir, `subnet-${host.n}.env`),
        },
      })
      agents.push(agent)
    }
    const out = (i: number): string => agents[i]!.stdout() + agents[i]!.stderr()
    const up = await waitUntil(
      async () =>
        [0, 1].every(
          (i) => out(i).includes('NetworkUnavailable=False') && out(i).includes('peers: 1'),
        ),
      60_000,
    )
    expect(up, `agents' output:\n${out(0)}\n---\n${out(1)}`).toBe(true)
    for (const host of topology.hosts) {
      const i = host.n - 1
      expect(out(i)).toContain(`ready: podCIDR 10.244.${host.n}.0/24, MTU 1450`)
      const env = await readFile(join(dir, `subnet-${host.n}.env`), 'utf8')
      expect(env).toContain(`FLANNEL_SUBNET=10.244.${host.n}.1/24`)
      const node = (
        await api.request<KubeNode>('GET', `/api/v1/nodes/${topology.prefix}-h${host.n}`)
      ).body
      const [link] = await readLinks(host.ns, 'flannel.1')
      expect(node.metadata.annotations).toMatchObject({
        [`${P}backend-type`]: 'vxlan',
        [`${P}backend-data`]: `{"VNI":1,"VtepMAC":"${link!.address}"}`,
        [`${P}public-ip`]: host.underlayIp,
        [`${P}kube-subnet-manager`]: 'true',
      })
      expect(node.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')?.status).toBe(
        'False',
      )
      // The peer's VTEP is programmed: an FDB entry towards its underlay address.
      const peer = topology.hosts.find((h) => h.n !== host.n)!
      // ('peers: 1' is printed when the batch reaches the network, before it is applied.)
      const programmed = await waitUntil(
        async () => (await readFdb(host.ns, 'flannel.1')).some((e) => e.dst === peer.underlayIp),
        30_000,
      )
      expect(programmed, `fdb of ${host.ns}`).toBe(true)
    }
  }, 120_000)
})
