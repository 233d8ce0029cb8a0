/**
 * A mixed Kubernetes cluster (issue 16; spec kube.md sections 3-6, interop.md
 * 2 items 18, 23, 24): one real kube-apiserver (with its etcd) in the switch
 * namespace, real flanneld v0.28.10 with `--kube-subnet-mgr` on host 1 and
 * `flannel-agent --kube-subnet-mgr` on host 2, both vxlan, both under the
 * `flannel` ServiceAccount of deploy/flannel-agent.yml (the stock
 * kube-flannel ClusterRole), both reaching the API server over the underlay.
 * Each learns the other from its Node's annotations, pods ping both ways, the
 * two Nodes carry the same annotations byte for byte apart from the MAC and
 * the host's own address, and restarting either side keeps the peers on the
 * other host and brings the restarted host's entries back. Skipped with a
 * printed reason when there is no flanneld, no kube-apiserver, no etcd or no
 * root.
 */
import { readFileSync } from 'node:fs'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadAll } from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Flanneld, SUBNET_FILE_WRITTEN, interopSkipReason } from '@flannel/testkit/flanneld'
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
  podAddress,
  readLinks,
  waitUntil,
  type NetnsHost,
  type Topology,
} from '@flannel/testkit/netns'
import type { ManagedProcess } from '@flannel/testkit/proc'

const skip = interopSkipReason() ?? kubeSkipReason() ?? (await netnsSkipReason())
if (skip) console.warn(`interop-kube-mixed: skipped: ${skip}`)

const P = 'flannel.alpha.coreos.com/'
const NET_CONF = '{"Network":"10.244.0.0/16","EnableNFTables":false,"Backend":{"Type":"vxlan"}}'
/** A kubelet always leaves some annotation; flanneld v0.28.10 panics on a Node with none (kube.md 10.6). */
const KUBELET_ANNOTATION = { 'node.alpha.kubernetes.io/ttl': '0' }
const RBAC_KINDS = new Set(['Namespace', 'ServiceAccount', 'ClusterRole', 'ClusterRoleBinding'])

const root = fileURLToPath(new URL('../../..', import.meta.url))

/** One host of the cluster and the Node it runs as. */
interface Side {
  readonly host: NetnsHost
  readonly node: string
  readonly subnet: string
  readonly subnetFile: string
}

/** The Node's annotations as stored. */
async function annotations(api: KubeApiserver, node: string): Promise<Record<string, string>> {
  const res = await api.request<KubeNode>('GET', `/api/v1/nodes/${node}`)
  if (res.status !== 200) throw new Error(`GET node ${node}: HTTP ${res.status} ${res.text}`)
  return { ...res.body.metadata.annotations }
}

async function vtepMac(host: NetnsHost): Promise<string> {
  const [link] = await readLinks(host.ns, 'flannel.1')
  if (link?.address === undefined) throw new Error(`no flannel.1 on ${host.ns}`)
  return link.address
}

/** `host`'s neighbour, FDB entry and route for its peer, with the peer's values as placeholders. */
async function peerEntries(host: NetnsHost, peer: Side, peerMac: string) {
  const addr = peer.subnet.split('/')[0]!
  const lines = async (cmd: string, args: string[]) =>
    (await host.exec(cmd, args))
      .split('\n')
      .map((l) =>
        l
          .replace(/ proto \S+/, '') // our routes carry proto 70, flanneld's none
          .replaceAll(peer.subnet, '<subnet>')
          .replaceAll(addr, '<addr>')
          .replaceAll(peerMac, '<mac>')
          .replaceAll(peer.host.underlayIp, '<public>')
          .trim(),
      )
      .filter((l) => l.includes('<'))
      .sort()
  return {
    neighbours: await lines('ip', ['-4', 'neigh', 'show', 'dev', 'flannel.1']),
    fdb: await lines('bridge', ['fdb', 'show', 'dev', 'flannel.1']),
    routes: (await lines('ip', ['-4', 'route', 'show', 'dev', 'flannel.1'])).filter((l) =>
      l.startsWith('<subnet> '),
    ),
  }
}

/** What flanneld's vxlan backend installs for one peer (interop.md 2 item 18). */
const PEER_ENTRIES = {
  neighbours: ['<addr> lladdr <mac> PERMANENT'],
  fdb: ['<mac> dst <public> self permanent'],
  routes: ['<subnet> via <addr> onlink'],
}

/** Removes `host`'s neighbour, FDB entry and route for `peer`. */
async function forgetPeer(host: NetnsHost, peer: Side, peerMac: string): Promise<void> {
  const addr = peer.subnet.split('/')[0]!
  await host.exec('ip', ['route', 'del', peer.subnet, 'dev', 'flannel.1'])
  await host.exec('ip', ['neigh', 'del', addr, 'dev', 'flannel.1'])
  await host.exec('bridge', [
    'fdb',
    'del',
    peerMac,
    'dev',
    'flannel.1',
    'dst',
    peer.host.underlayIp,
  ])
}

async function ping(from: Side, to: Side): Promise<boolean> {
  const out = await from.host
    .exec('ping', ['-c1', '-W2', '-I', podAddress(from.subnet), podAddress(to.subnet)])
    .catch((error: unknown) => String(error))
  return out.includes('1 received')
}

describe.skipIf(skip !== undefined)(
  `kube mode: real flanneld and flannel-agent on one kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let topology: Topology | undefined
    let api: KubeApiserver | undefined
    let dir: string | undefined
    let kubeconfig: string
    let flanneld: Flanneld | undefined
    let agent: ManagedProcess | undefined
    let theirs: Side
    let ours: Side

    async function startFlanneld(): Promise<void> {
      await rm(theirs.subnetFile, { force: true })
      flanneld = Flanneld.start({
        netns: { name: theirs.host.ns },
        args: [
          '--kube-subnet-mgr',
          `--kubeconfig-file=${kubeconfig}`,
          `--net-config-path=${join(dir!, 'net-conf.json')}`,
          `--iface=${theirs.host.iface}`,
          `--subnet-file=${theirs.subnetFile}`,
          '--ip-masq=false',
          '--iptables-forward-rules=false',
        ],
        env: {
          NODE_NAME: theirs.node,
          POD_NAME: 'kube-flannel-ds-h1',
          POD_NAMESPACE: 'kube-flannel',
        },
      })
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN, 60_000)
    }

    async function stopFlanneld(): Promise<void> {
      await flanneld?.stop()
      flanneld = undefined
    }

    async function startAgent(): Promise<void> {
      await rm(ours.subnetFile, { force: true })
      const proc = ours.host.spawn(
        process.execPath,
        [
          '--conditions=@flannel/source',
          '--import',
          'tsx',
          AGENT_CLI,
          '--kube-subnet-mgr',
          `--kubeconfig-file=${kubeconfig}`,
          `--net-config-path=${join(dir!, 'net-conf.json')}`,
          `--iface=${ours.host.iface}`,
          `--subnet-file=${ours.subnetFile}`,
          '--ip-masq=false',
          '--iptables-forward-rules=false',
        ],
        {
          env: {
            ...process.env,
            NODE_NAME: ours.node,
            POD_NAME: 'kube-flannel-ds-h2',
            POD_NAMESPACE: 'kube-flannel',
          },
        },
      )
      agent = proc
      // (waitUntil swallows a probe's error, so an exit ends the wait by a value)
      const written = await waitUntil(
        async () =>
          proc.exitCode !== undefined || (await readFile(ours.subnetFile, 'utf8').catch(() => '')),
        60_000,
      )
      if (proc.exitCode !== undefined) {
        throw new Error(`flannel-agent exited (${proc.exitCode}):\n${proc.stderr()}`)
      }
      if (!written) throw new Error(`no subnet.env from flannel-agent:\n${proc.stderr()}`)
    }

    async function stopAgent(): Promise<void> {
      const code = await agent?.stop('SIGTERM', 5000)
      agent = undefined
      expect(code).toBe(0)
    }

    /** Waits until `host` has the three entries for `peer` and returns them. */
    async function learnt(host: NetnsHost, peer: Side) {
      const mac = await vtepMac(peer.host)
      const entries = await waitUntil(async () => {
        const e = await peerEntries(host, peer, mac)
        return e.neighbours.length > 0 && e.fdb.length > 0 && e.routes.length > 0 ? e : undefined
      }, 30_000)
      return entries ?? (await peerEntries(host, peer, mac))
    }

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-kube-mixed-'))
      topology = await createTopology({ hosts: 2 })
      const [h1, h2] = topology.hosts as [NetnsHost, NetnsHost]
      api = await startKubeApiserver({ netns: topology.switchNs, host: topology.switchIp })
      const manifest = loadAll(
        readFileSync(join(root, 'deploy/flannel-agent.yml'), 'utf8'),
      ) as KubeObject[]
      for (const object of manifest.filter((o) => RBAC_KINDS.has(o.kind))) {
        const res = await api.apply(object)
        if (res.status !== 200 && res.status !== 201) {
          throw new Error(`applying ${object.kind} ${object.metadata.name}: ${res.text}`)
        }
      }
      // The stock ClusterRole's ServiceAccount, with the server as seen from the hosts.
      kubeconfig = (
        await api.serviceAccountKubeconfig('kube-flannel', 'flannel', { server: api.url })
      ).kubeconfigPath
      await writeFile(join(dir, 'net-conf.json'), NET_CONF)
      theirs = {
        host: h1,
        node: 'node-flanneld',
        subnet: '10.244.1.0/24',
        subnetFile: join(dir, 'h1.env'),
      }
      ours = {
        host: h2,
        node: 'node-agent',
        subnet: '10.244.2.0/24',
        subnetFile: join(dir, 'h2.env'),
      }
      for (const side of [theirs, ours]) {
        await api.createNode(side.node, side.subnet, KUBELET_ANNOTATION)
        await side.host.addPodAddress(`${podAddress(side.subnet)}/24`)
      }
      await startFlanneld()
      await startAgent()
    }, 240_000)

    afterAll(async () => {
      await stopFlanneld()
      await agent?.stop('SIGTERM', 5000)
      await api?.stop()
      await topology?.destroy()
      if (dir !== undefined) await rm(dir, { recursive: true, force: true })
    }, 60_000)

    it('writes the podCIDR into subnet.env on both hosts, line for line alike', async () => {
      const env = (text: string) => text.trim().split('\n')
      expect(env(await readFile(theirs.subnetFile, 'utf8'))).toEqual([
        'FLANNEL_NETWORK=10.244.0.0/16',
        'FLANNEL_SUBNET=10.244.1.1/24',
        'FLANNEL_MTU=1450',
        'FLANNEL_IPMASQ=false',
      ])
      expect(env(await readFile(ours.subnetFile, 'utf8'))).toEqual([
        'FLANNEL_NETWORK=10.244.0.0/16',
        'FLANNEL_SUBNET=10.244.2.1/24',
        'FLANNEL_MTU=1450',
        'FLANNEL_IPMASQ=false',
      ])
    })

    it("each host learns the other from its Node's annotations: neighbour, FDB entry, onlink route", async () => {
      expect(await learnt(theirs.host, ours)).toEqual(PEER_ENTRIES)
      expect(await learnt(ours.host, theirs)).toEqual(PEER_ENTRIES)
    }, 70_000)

    it('pods ping both ways', async () => {
      await learnt(theirs.host, ours)
      await learnt(ours.host, theirs)
      expect(await ping(theirs, ours)).toBe(true)
      expect(await ping(ours, theirs)).toBe(true)
    }, 70_000)

    it('both Nodes carry the same annotation bytes apart from the MAC and the own address, and the same condition', async () => {
      const shape = async (side: Side) => {
        const mac = await vtepMac(side.host)
        const stored = await annotations(api!, side.node)
        return {
          mac,
          stored,
          shape: Object.fromEntries(
            Object.entries(stored).map(([key, value]) => [
              key,
              Buffer.from(value.replaceAll(mac, '<mac>').replaceAll(side.host.underlayIp, '<ip>')),
            ]),
          ),
        }
      }
      const a = await shape(theirs)
      const b = await shape(ours)
      expect(Object.keys(b.stored).sort()).toEqual(Object.keys(a.stored).sort())
      for (const key of Object.keys(a.shape)) {
        expect({ key, bytes: b.shape[key] }).toEqual({ key, bytes: a.shape[key] })
      }
      // and the values themselves, as flanneld writes them (kube.md 3.2, 3.3)
      for (const side of [a, b]) {
        expect(side.shape[`${P}backend-data`]?.toString()).toBe('{"VNI":1,"VtepMAC":"<mac>"}')
      }
      expect(a.stored).toEqual({
        ...KUBELET_ANNOTATION,
        [`${P}backend-data`]: `{"VNI":1,"VtepMAC":"${a.mac}"}`,
        [`${P}backend-type`]: 'vxlan',
        [`${P}kube-subnet-manager`]: 'true',
        [`${P}public-ip`]: theirs.host.underlayIp,
      })
      expect(b.stored[`${P}public-ip`]).toBe(ours.host.underlayIp)

      const condition = async (node: string) => {
        const res = await api!.request<KubeNode>('GET', `/api/v1/nodes/${node}`)
        return res.body.status?.conditions?.find((c) => c.type === 'NetworkUnavailable')
      }
      // flanneld patches the condition after subnet.env; wait for it, as for ours
      const [c1, c2] = await Promise.all(
        [theirs, ours].map((s) => waitUntil(() => condition(s.node), 20_000)),
      )
      const stamp = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/
      for (const c of [c1, c2]) {
        expect(c).toMatchObject({
          type: 'NetworkUnavailable',
          status: 'False',
          reason: 'FlannelIsUp',
          message: 'Flannel is running on this node',
        })
        expect(c?.lastHeartbeatTime).toMatch(stamp)
        expect(c?.lastTransitionTime).toMatch(stamp)
      }
      expect(Object.keys(c2!).sort()).toEqual(Object.keys(c1!).sort())
    }, 40_000)

    it('flanneld restarted: our host keeps its peer meanwhile; flanneld re-learns us, publishes the same bytes, pods ping', async () => {
      const before = await annotations(api!, theirs.node)
      const ourMac = await vtepMac(ours.host)
      await stopFlanneld()
      // nothing is withdrawn while flanneld is down (kube.md 6)
      expect(await annotations(api!, theirs.node)).toEqual(before)
      expect(await learnt(ours.host, theirs)).toEqual(PEER_ENTRIES)
      // what comes back on flanneld's host is the restarted flanneld's doing
      await forgetPeer(theirs.host, ours, ourMac)
      expect((await peerEntries(theirs.host, ours, ourMac)).routes).toEqual([])
      await startFlanneld()
      expect(await learnt(theirs.host, ours)).toEqual(PEER_ENTRIES)
      expect(await annotations(api!, theirs.node)).toEqual(before)
      expect(await ping(theirs, ours)).toBe(true)
      expect(await ping(ours, theirs)).toBe(true)
    }, 120_000)

    it('flannel-agent restarted: flanneld keeps its peer meanwhile; the agent re-learns flanneld, publishes the same bytes, pods ping', async () => {
      const before = await annotations(api!, ours.node)
      const theirMac = await vtepMac(theirs.host)
      await stopAgent()
      expect(await annotations(api!, ours.node)).toEqual(before)
      expect(await learnt(theirs.host, ours)).toEqual(PEER_ENTRIES)
      await forgetPeer(ours.host, theirs, theirMac)
      expect((await peerEntries(ours.host, theirs, theirMac)).routes).toEqual([])
      await startAgent()
      expect(await learnt(ours.host, theirs)).toEqual(PEER_ENTRIES)
      expect(await annotations(api!, ours.node)).toEqual(before)
      expect(await ping(theirs, ours)).toBe(true)
      expect(await ping(ours, theirs)).toBe(true)
    }, 120_000)
  },
)
