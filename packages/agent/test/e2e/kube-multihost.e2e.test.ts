/**
 * flanneld's `--kube-subnet-mgr` mode end to end: a real kube-apiserver (with
 * its etcd) in the switch namespace, three hosts as network namespaces, each
 * a Node object with its own podCIDR, one `flannel-agent --kube-subnet-mgr`
 * process per host under the stock manifest's RBAC (ServiceAccount
 * kube-flannel/flannel), for vxlan and host-gw:
 *
 * - the annotations each agent writes are flanneld's, byte for byte, and
 *   `NetworkUnavailable` is `False` (`FlannelIsUp`);
 * - a Node created without annotations and without a podCIDR: its agent says
 *   why (flanneld's message) and waits, then starts once the podCIDR is set
 *   (flanneld exits there, and panics on a Node without annotations);
 * - pings between the hosts' pod addresses;
 * - an API server restart loses no peer on any host (sampled all along), and
 *   a Node added while the agents are reconnecting is programmed everywhere;
 * - a deleted Node's entries disappear on the others, while its own agent
 *   keeps running (flanneld's kube mode does not watch its own lease);
 * - vxlan: an agent restarted after its flannel.1 is gone (a reboot) creates
 *   it again with the VtepMAC of its Node's backend-data, so the annotation
 *   and the peers' entries stay as they were.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadAll } from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
  type KubeObject,
} from '@flannel/testkit/kube'
import {
  AGENT_CLI,
  createTopology,
  netnsSkipReason,
  parseEnvFile,
  pingMatrix,
  podAddress,
  readFdb,
  readLinks,
  readNeighbours,
  readRoutes,
  sweepStaleNamespaces,
  waitUntil,
  type NetnsHost,
  type Topology,
} from '@flannel/testkit/netns'
import type { ManagedProcess } from '@flannel/testkit/proc'

const skip = (await netnsSkipReason()) ?? kubeSkipReason()
if (skip) console.warn(`kube multi-host e2e skipped: ${skip}`)
else await sweepStaleNamespaces()

const P = 'flannel.alpha.coreos.com/'
const NETWORK = '10.244.0.0/16'
const root = fileURLToPath(new URL('../../../..', import.meta.url))

/** The RBAC objects of the stock manifest (the DaemonSet needs a kubelet, which there is none of). */
function rbacObjects(): KubeObject[] {
  const text = readFileSync(join(root, 'deploy/flannel-agent.yml'), 'utf8')
  const docs = (loadAll(text) as (KubeObject | null)[]).filter((d): d is KubeObject => d !== null)
  const wanted = ['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding']
  return wanted.map((kind) => {
    const doc = docs.find((d) => d.kind === kind)
    if (doc === undefined) throw new Error(`deploy/flannel-agent.yml has no ${kind}`)
    return doc
  })
}

/** The messages of an agent's pino log (one JSON object per line on stderr). */
function logMessages(proc: ManagedProcess): string[] {
  const out: string[] = []
  for (const line of proc.stderr().split('\n')) {
    if (!line.startsWith('{')) continue
    try {
      const msg = (JSON.parse(line) as { msg?: unknown }).msg
      if (typeof msg === 'string') out.push(msg)
    } catch {
      // a line cut by the pipe; the next read has it whole
    }
  }
  return out
}

interface KubeCluster {
  readonly topology: Topology
  readonly api: KubeApiserver
  readonly dir: string
  /** Node name of host `i`. */
  node(i: number): string
  /** The running agent of host `i`. */
  agent(i: number): ManagedProcess
  startAgent(i: number): ManagedProcess
  stopAgent(i: number): Promise<void>
  subnetFile(i: number): string
  /** Waits for host `i`'s subnet.env; returns its values. */
  waitForSubnetEnv(i: number): Promise<Record<string, string>>
  getNode(name: string): Promise<KubeNode | undefined>
  destroy(): Promise<void>
}

/**
 * The topology, the API server inside its switch namespace at the switch
 * address (the hosts reach it over the underlay), the stock RBAC and a
 * ServiceAccount kubeconfig naming that address. Torn down on failure.
 */
async function startKubeCluster(backend: string): Promise<KubeCluster> {
  const dir = await mkdtemp(join(tmpdir(), 'flannel-kube-e2e-'))
  let topology: Topology | undefined
  let api: KubeApiserver | undefined
  const agents: (ManagedProcess | undefined)[] = []
  const destroy = async (): Promise<void> => {
    await Promise.all(agents.map((a) => a?.stop('SIGTERM', 5000).catch(() => undefined)))
    await api?.stop().catch(() => undefined)
    await topology?.destroy()
    await rm(dir, { recursive: true, force: true })
  }
  try {
    topology = await createTopology({ hosts: 3 })
    api = await startKubeApiserver({ netns: topology.switchNs, host: topology.switchIp })
    for (const object of rbacObjects()) {
      const res = await api.apply(object)
      if (res.status !== 200 && res.status !== 201) {
        throw new Error(`applying ${object.kind}: HTTP ${res.status} ${res.text}`)
      }
    }
    const sa = await api.serviceAccountKubeconfig('kube-flannel', 'flannel', { server: api.url })
    // The authorizer learns of the binding from its informer: start the agents once it has.
    const granted = await waitUntil(
      async () =>
        (await api!.request('GET', '/api/v1/nodes?limit=1', undefined, { token: sa.token }))
          .status === 200,
      30_000,
    )
    if (!granted) throw new Error('the ClusterRoleBinding never took effect')
    const netConf = join(dir, 'net-conf.json')
    await writeFile(netConf, JSON.stringify({ Network: NETWORK, Backend: { Type: backend } }))
    const topo = topology
    const server = api
    const prefix = topo.prefix
    const subnetFile = (i: number): string => join(dir, `h${i + 1}.env`)
    const cluster: KubeCluster = {
      topology: topo,
      api: server,
      dir,
      node: (i) => `${prefix}-node${i + 1}`,
      agent: (i) => {
        const a = agents[i]
        if (a === undefined) throw new Error(`agent ${i} is not running`)
        return a
      },
      startAgent(i) {
        const host = topo.hosts[i]!
        const proc = host.spawn(
          process.execPath,
          [
            '--conditions=@flannel/source',
            '--import',
            'tsx',
            AGENT_CLI,
            '--kube-subnet-mgr',
            `--kubeconfig-file=${sa.kubeconfigPath}`,
            `--net-config-path=${netConf}`,
            `--iface=${host.iface}`,
            `--subnet-file=${subnetFile(i)}`,
          ],
          { env: { ...process.env, NODE_NAME: cluster.node(i) } },
        )
        agents[i] = proc
        return proc
      },
      async stopAgent(i) {
        await agents[i]?.stop('SIGTERM', 5000)
        agents[i] = undefined
      },
      subnetFile,
      async waitForSubnetEnv(i) {
        const proc = cluster.agent(i)
        const text = await waitUntil(async () => {
          if (proc.exitCode !== undefined) {
            throw new Error(`agent ${i + 1} exited (${proc.exitCode}): ${proc.stderr()}`)
          }
          return readFile(subnetFile(i), 'utf8').catch(() => '')
        }, 60_000)
        if (!text) throw new Error(`no subnet.env from agent ${i + 1}:\n${proc.stderr()}`)
        return parseEnvFile(text)
      },
      async getNode(name) {
        const res = await server.request<KubeNode>('GET', `/api/v1/nodes/${name}`)
        return res.status === 200 ? res.body : undefined
      },
      destroy,
    }
    return cluster
  } catch (error) {
    await destroy()
    throw error
  }
}

/** The podCIDR of host `i` (0-based). */
const podCidr = (i: number): string => `10.244.${i + 1}.0/24`

/**
 * Nodes 1 and 2 with their podCIDRs, node 3 without one; all without any
 * annotation. Starts the three agents, waits for agent 3's message, sets its
 * podCIDR and waits for every subnet.env; puts each pod address on cni0.
 */
async function bringUp(cluster: KubeCluster): Promise<void> {
  await cluster.api.createNode(cluster.node(0), podCidr(0))
  await cluster.api.createNode(cluster.node(1), podCidr(1))
  await cluster.api.createNode(cluster.node(2))
  for (let i = 0; i < 3; i++) cluster.startAgent(i)
  await cluster.agent(2).waitFor(/pod cidr not assigned/, 60_000)
  const patch = await cluster.api.request('PATCH', `/api/v1/nodes/${cluster.node(2)}`, {
    spec: { podCIDR: podCidr(2), podCIDRs: [podCidr(2)] },
  })
  if (patch.status !== 200) throw new Error(`setting the podCIDR: ${patch.text}`)
  for (let i = 0; i < 3; i++) {
    const env = await cluster.waitForSubnetEnv(i)
    if (env.FLANNEL_SUBNET !== `${podAddress(podCidr(i))}/24`) {
      throw new Error(`agent ${i + 1} wrote FLANNEL_SUBNET=${env.FLANNEL_SUBNET}`)
    }
    await cluster.topology.hosts[i]!.addPodAddress(`${podAddress(podCidr(i))}/24`)
  }
}

/** The peer subnets host `host` routes (vxlan: via flannel.1; host-gw: via eth0 inside 10.244/16). */
async function routedSubnets(backend: string, host: NetnsHost): Promise<string[]> {
  const dev = backend === 'vxlan' ? 'flannel.1' : 'eth0'
  const routes = await readRoutes(host.ns, { dev })
  return routes
    .filter((r) => r.dst.startsWith('10.244.') && r.gateway !== undefined)
    .map((r) => r.dst)
    .sort()
}

/** A condition's timestamps: Go's `metav1.Time`, RFC 3339 UTC in whole seconds. */
const KUBE_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}Z$/

for (const backend of ['vxlan', 'host-gw'] as const) {
  describe.skipIf(skip !== undefined)(
    `kube multi-host e2e: ${backend}${skip ? ` (skipped: ${skip})` : ''}`,
    { timeout: 120_000 },
    () => {
      let cluster: KubeCluster | undefined
      const hosts = (): readonly NetnsHost[] => cluster!.topology.hosts
      const subnets = [podCidr(0), podCidr(1), podCidr(2)]

      beforeAll(async () => {
        cluster = await startKubeCluster(backend)
        await bringUp(cluster)
      }, 240_000)
      afterAll(async () => {
        await cluster?.destroy()
      }, 60_000)

      it("agent 3 said why it waited (flanneld's message) and started once its podCIDR was set", () => {
        const messages = logMessages(cluster!.agent(2))
        const name = cluster!.node(2)
        expect(messages).toContain(`Created subnet manager: Kubernetes Subnet Manager - ${name}`)
        expect(messages.some((m) => m.startsWith(`node "${name}" pod cidr not assigned`))).toBe(
          true,
        )
        expect(messages).toContain(`node "${name}" pod cidr assigned`)
      })

      it("each Node carries flanneld's annotations, byte for byte, and NetworkUnavailable=False", async () => {
        for (const [i, host] of hosts().entries()) {
          const node = (await cluster!.getNode(cluster!.node(i)))!
          let data = 'null'
          if (backend === 'vxlan') {
            const [dev] = await readLinks(host.ns, 'flannel.1')
            data = `{"VNI":1,"VtepMAC":"${dev!.address}"}`
          }
          expect(node.metadata.annotations, cluster!.node(i)).toEqual({
            [`${P}backend-data`]: data,
            [`${P}backend-type`]: backend,
            [`${P}kube-subnet-manager`]: 'true',
            [`${P}public-ip`]: host.underlayIp,
          })
          const condition = await waitUntil(async () => {
            const n = await cluster!.getNode(cluster!.node(i))
            return n?.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')
          }, 20_000)
          expect(condition).toMatchObject({
            type: 'NetworkUnavailable',
            status: 'False',
            reason: 'FlannelIsUp',
            message: 'Flannel is running on this node',
          })
          expect(condition!.lastTransitionTime).toMatch(KUBE_TIME)
          expect(condition!.lastHeartbeatTime).toBe(condition!.lastTransitionTime)
        }
      })

      it('routes every peer subnet and carries pings between every pair of pod addresses', async () => {
        for (const [i, host] of hosts().entries()) {
          const want = subnets.filter((_, j) => j !== i).sort()
          const got = await waitUntil(async () => {
            const r = await routedSubnets(backend, host)
            return r.length === want.length ? r : undefined
          }, 20_000)
          expect(got, host.ns).toEqual(want)
          if (backend === 'host-gw') {
            const routes = await readRoutes(host.ns, { dev: 'eth0' })
            expect(
              routes
                .filter((r) => r.dst.startsWith('10.244.'))
                .map((r) => `${r.dst} via ${r.gateway}`)
                .sort(),
            ).toEqual(
              hosts()
                .map((h, j) => ({ h, j }))
                .filter(({ j }) => j !== i)
                .map(({ h, j }) => `${subnets[j]} via ${h.underlayIp}`)
                .sort(),
            )
          }
        }
        expect(await pingMatrix(hosts(), subnets)).toEqual([])
      })

      if (backend === 'vxlan') {
        it("restarted after its flannel.1 is gone, an agent recreates it with its Node's VtepMAC; nothing changes for the peers", async () => {
          const h1 = hosts()[0]!
          const [before] = await readLinks(h1.ns, 'flannel.1')
          const annotation = (await cluster!.getNode(cluster!.node(0)))!.metadata.annotations![
            `${P}backend-data`
          ]
          expect(annotation).toBe(`{"VNI":1,"VtepMAC":"${before!.address}"}`)
          const peerNeigh = async (): Promise<string[]> =>
            (
              await Promise.all(
                hosts()
                  .slice(1)
                  .map((h) => readNeighbours(h.ns, 'flannel.1')),
              )
            )
              .flat()
              .filter((n) => n.dst === subnets[0]!.split('/')[0])
              .map((n) => `${n.dst} ${n.lladdr}`)
          const neighBefore = await peerNeigh()
          expect(neighBefore).toEqual([
            `10.244.1.0 ${before!.address}`,
            `10.244.1.0 ${before!.address}`,
          ])

          await cluster!.stopAgent(0)
          // A reboot: the device is gone, the Node keeps its annotations.
          await h1.exec('ip', ['link', 'del', 'flannel.1'])
          await rm(cluster!.subnetFile(0), { force: true })
          cluster!.startAgent(0)
          await cluster!.waitForSubnetEnv(0)
          const [after] = await readLinks(h1.ns, 'flannel.1')
          expect(after!.ifindex).not.toBe(before!.ifindex)
          expect(after!.address).toBe(before!.address)
          expect(logMessages(cluster!.agent(0))).toContain(
            `Interface flannel.1 mac address set to: ${before!.address}`,
          )
          expect(
            (await cluster!.getNode(cluster!.node(0)))!.metadata.annotations![`${P}backend-data`],
          ).toBe(annotation)
          expect(await peerNeigh()).toEqual(neighBefore)
          expect(await pingMatrix(hosts(), subnets)).toEqual([])
        })
      }

      it('an API server restart loses no peer on any host, and a Node added meanwhile is programmed everywhere', async () => {
        // Sampled from a state where every host routes every peer.
        for (const [i, host] of hosts().entries()) {
          const want = subnets.filter((_, j) => j !== i)
          const all = await waitUntil(async () => {
            const have = await routedSubnets(backend, host)
            return want.every((s) => have.includes(s))
          }, 20_000)
          expect(all, `${host.ns} routes every peer before the restart`).toBe(true)
        }
        const lost: string[] = []
        let sampling = true
        const sampler = (async () => {
          while (sampling) {
            for (const [i, host] of hosts().entries()) {
              const have = await routedSubnets(backend, host).catch((): string[] => [])
              for (const [j, s] of subnets.entries()) {
                if (j !== i && !have.includes(s)) lost.push(`${host.ns} lost ${s}`)
              }
            }
            await new Promise((r) => setTimeout(r, 50))
          }
        })()
        const extra = '10.244.9.0/24'
        try {
          await cluster!.api.restart()
          // The agents' watches broke with the old process; they are reconnecting now.
          await cluster!.api.createNode(`${cluster!.topology.prefix}-node9`, extra, {
            [`${P}kube-subnet-manager`]: 'true',
            [`${P}backend-type`]: backend,
            [`${P}backend-data`]:
              backend === 'vxlan' ? '{"VNI":1,"VtepMAC":"02:00:c0:00:02:09"}' : 'null',
            [`${P}public-ip`]: '192.0.2.9',
          })
          for (const host of hosts()) {
            const learned = await waitUntil(
              async () => (await routedSubnets(backend, host)).includes(extra),
              30_000,
            )
            expect(learned, `${host.ns} learned ${extra}`).toBe(true)
          }
        } finally {
          sampling = false
          await sampler
        }
        expect(lost).toEqual([])
        for (let i = 0; i < 3; i++) expect(cluster!.agent(i).exitCode).toBeUndefined()
        expect(await pingMatrix(hosts(), subnets)).toEqual([])
      })

      it("a deleted Node's entries disappear on the others, and its own agent keeps running", async () => {
        const gone = cluster!.node(2)
        const res = await cluster!.api.request('DELETE', `/api/v1/nodes/${gone}`)
        expect(res.status).toBe(200)
        for (const host of hosts().slice(0, 2)) {
          const removed = await waitUntil(
            async () => !(await routedSubnets(backend, host)).includes(subnets[2]!),
            20_000,
          )
          expect(removed, `${host.ns} dropped ${subnets[2]}`).toBe(true)
          if (backend === 'vxlan') {
            const fdb = await readFdb(host.ns, 'flannel.1')
            expect(fdb.some((e) => e.dst === hosts()[2]!.underlayIp)).toBe(false)
          }
        }
        // Agent 3 saw its own Node go and carries on: a peer removed after it is
        // removed on host 3 too, and its process is still there.
        await cluster!.api.request('DELETE', `/api/v1/nodes/${cluster!.topology.prefix}-node9`)
        const h3 = hosts()[2]!
        const followed = await waitUntil(
          async () => !(await routedSubnets(backend, h3)).includes('10.244.9.0/24'),
          20_000,
        )
        expect(followed).toBe(true)
        expect(cluster!.agent(2).exitCode).toBeUndefined()
        expect(await routedSubnets(backend, h3)).toEqual([subnets[0], subnets[1]])
      })
    },
  )
}
