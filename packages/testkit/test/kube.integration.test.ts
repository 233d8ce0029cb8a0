import { existsSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { request as httpsRequest } from 'node:https'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  KUBE_APISERVER_VERSION,
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
} from '@flannel/testkit/kube'
import { createTopology, netnsSkipReason, nsExec, type Topology } from '@flannel/testkit/netns'

const skip = kubeSkipReason()
const PREFIX = 'flannel.alpha.coreos.com'

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0)
    return true
  } catch {
    return false
  }
}

/** GET with nothing but what a kubeconfig file gives (server, CA data, token). */
async function getWithKubeconfig(path: string, apiPath: string): Promise<number> {
  const kc = JSON.parse(await readFile(path, 'utf8')) as {
    clusters: { cluster: { server: string; 'certificate-authority-data': string } }[]
    users: { user: { token: string } }[]
  }
  const server = new URL(kc.clusters[0]!.cluster.server)
  const ca = Buffer.from(kc.clusters[0]!.cluster['certificate-authority-data'], 'base64')
  return await new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: server.hostname,
        port: server.port,
        path: apiPath,
        ca,
        agent: false,
        headers: { authorization: `Bearer ${kc.users[0]!.user.token}` },
      },
      (res) => {
        res.resume()
        res.on('end', () => resolve(res.statusCode ?? 0))
      },
    )
    req.on('error', reject)
    req.end()
  })
}

describe.skipIf(skip)(`startKubeApiserver${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let api: KubeApiserver

  beforeAll(async () => {
    api = await startKubeApiserver()
  }, 120_000)
  afterAll(async () => {
    await api?.stop()
  })

  it('serves the version the build script built, on loopback', async () => {
    expect(new URL(api.url).hostname).toBe('127.0.0.1')
    expect(api.localUrl).toBe(api.url)
    const res = await api.request<{ gitVersion: string }>('GET', '/version')
    expect(res.status).toBe(200)
    expect(res.body.gitVersion).toBe(KUBE_APISERVER_VERSION)
  })

  it('authorizes with RBAC: the admin token works, an unknown token is refused', async () => {
    expect((await api.request('GET', '/api/v1/nodes')).status).toBe(200)
    expect((await api.request('GET', '/api/v1/nodes', undefined, { token: 'nope' })).status).toBe(
      401,
    )
  })

  it('writes an admin kubeconfig that reaches the server on its own', async () => {
    expect(await getWithKubeconfig(api.kubeconfigPath, '/api/v1/nodes')).toBe(200)
  })

  it('creates Nodes with podCIDR(s) and annotations, and patches annotations and status', async () => {
    const single = await api.createNode('kit-single', '10.244.1.0/24', { 'example.com/a': '1' })
    expect(single.spec?.podCIDR).toBe('10.244.1.0/24')
    expect(single.spec?.podCIDRs).toEqual(['10.244.1.0/24'])
    expect(single.metadata.annotations).toEqual({ 'example.com/a': '1' })

    const dual = await api.createNode('kit-dual', ['10.244.2.0/24', 'fd00:10:244:2::/64'])
    expect(dual.spec?.podCIDR).toBe('10.244.2.0/24')
    expect(dual.spec?.podCIDRs).toEqual(['10.244.2.0/24', 'fd00:10:244:2::/64'])

    const none = await api.createNode('kit-none')
    expect(none.spec?.podCIDR).toBeUndefined()

    // Strategic merge: new keys are added, null removes a key, others stay.
    const patched = await api.request<KubeNode>('PATCH', '/api/v1/nodes/kit-single', {
      metadata: {
        annotations: {
          [`${PREFIX}/public-ip`]: '192.0.2.1',
          [`${PREFIX}/kube-subnet-manager`]: 'true',
          'example.com/a': null,
        },
      },
    })
    expect(patched.status).toBe(200)
    expect(patched.body.metadata.annotations).toEqual({
      [`${PREFIX}/public-ip`]: '192.0.2.1',
      [`${PREFIX}/kube-subnet-manager`]: 'true',
    })

    // flanneld patches annotations and the condition through the status subresource.
    const status = await api.request<KubeNode>('PATCH', '/api/v1/nodes/kit-single/status', {
      metadata: { annotations: { [`${PREFIX}/backend-type`]: 'vxlan' } },
      status: {
        conditions: [
          {
            type: 'NetworkUnavailable',
            status: 'False',
            reason: 'FlannelIsUp',
            message: 'Flannel is running on this node',
          },
        ],
      },
    })
    expect(status.status).toBe(200)
    expect(status.body.metadata.annotations?.[`${PREFIX}/backend-type`]).toBe('vxlan')
    expect(status.body.status?.conditions).toContainEqual(
      expect.objectContaining({
        type: 'NetworkUnavailable',
        status: 'False',
        reason: 'FlannelIsUp',
      }),
    )

    // A podCIDR once set is immutable.
    const change = await api.request('PATCH', '/api/v1/nodes/kit-single', {
      spec: { podCIDR: '10.244.9.0/24', podCIDRs: ['10.244.9.0/24'] },
    })
    expect(change.status).toBe(422)
  })

  it('a watch sees ADDED, MODIFIED and DELETED in order', async () => {
    const watch = await api.watch<KubeNode>('/api/v1/nodes?fieldSelector=metadata.name%3Dkit-watch')
    try {
      await api.createNode('kit-watch', '10.244.3.0/24')
      const added = await watch.nextEvent()
      expect(added.type).toBe('ADDED')
      expect(added.object.spec?.podCIDR).toBe('10.244.3.0/24')

      const patch = await api.request('PATCH', '/api/v1/nodes/kit-watch', {
        metadata: { annotations: { [`${PREFIX}/public-ip`]: '192.0.2.3' } },
      })
      expect(patch.status).toBe(200)
      const modified = await watch.nextEvent()
      expect(modified.type).toBe('MODIFIED')
      expect(modified.object.metadata.annotations?.[`${PREFIX}/public-ip`]).toBe('192.0.2.3')

      expect((await api.request('DELETE', '/api/v1/nodes/kit-watch')).status).toBe(200)
      const deleted = await watch.nextEvent()
      expect(deleted.type).toBe('DELETED')
      expect(deleted.object.metadata.name).toBe('kit-watch')
      expect(watch.events.map((e) => e.type)).toEqual(['ADDED', 'MODIFIED', 'DELETED'])
    } finally {
      watch.close()
    }
  })

  it('gives ServiceAccount tokens that authenticate as the account and carry only its RBAC', async () => {
    const ns = { apiVersion: 'v1', kind: 'Namespace', metadata: { name: 'kit-sa' } }
    expect((await api.request('POST', '/api/v1/namespaces', ns)).status).toBe(201)
    const sa = { apiVersion: 'v1', kind: 'ServiceAccount', metadata: { name: 'probe' } }
    expect(
      (await api.request('POST', '/api/v1/namespaces/kit-sa/serviceaccounts', sa)).status,
    ).toBe(201)

    const creds = await api.serviceAccountKubeconfig('kit-sa', 'probe')
    expect(creds.username).toBe('system:serviceaccount:kit-sa:probe')
    const review = await api.request<{ status: { userInfo: { username: string } } }>(
      'POST',
      '/apis/authentication.k8s.io/v1/selfsubjectreviews',
      { apiVersion: 'authentication.k8s.io/v1', kind: 'SelfSubjectReview' },
      { token: creds.token },
    )
    expect(review.status).toBe(201)
    expect(review.body.status.userInfo.username).toBe(creds.username)
    // No role grants it anything yet.
    expect(await getWithKubeconfig(creds.kubeconfigPath, '/api/v1/nodes')).toBe(403)
    await expect(api.serviceAccountKubeconfig('kit-sa', 'missing')).rejects.toThrow(/HTTP 404/)
  })

  it('restart() keeps the port and the data', async () => {
    await api.createNode('kit-restart', '10.244.4.0/24', { [`${PREFIX}/public-ip`]: '192.0.2.4' })
    const before = api.pid
    const { url } = api
    await api.restart()
    expect(api.pid).not.toBe(before)
    expect(before !== undefined && alive(before)).toBe(false)
    expect(api.url).toBe(url)
    const node = await api.request<KubeNode>('GET', '/api/v1/nodes/kit-restart')
    expect(node.status).toBe(200)
    expect(node.body.metadata.annotations?.[`${PREFIX}/public-ip`]).toBe('192.0.2.4')
    expect(await getWithKubeconfig(api.kubeconfigPath, '/api/v1/nodes/kit-restart')).toBe(200)
  })

  it('stop() ends the server and its etcd and removes every file', async () => {
    const pid = api.pid!
    const etcdPid = api.etcd.pid!
    expect(alive(pid) && alive(etcdPid)).toBe(true)
    await api.stop()
    expect(alive(pid)).toBe(false)
    expect(alive(etcdPid)).toBe(false)
    expect(existsSync(api.dir)).toBe(false)
    expect(existsSync(api.etcd.dir)).toBe(false)
    await expect(api.request('GET', '/readyz')).rejects.toThrow(/ECONNREFUSED/)
    await api.stop() // idempotent
  })
})

const nsSkip = skip ?? (await netnsSkipReason())

describe.skipIf(nsSkip)(
  `startKubeApiserver in a namespace${nsSkip ? ` (skipped: ${nsSkip})` : ''}`,
  () => {
    let topology: Topology
    let api: KubeApiserver

    beforeAll(async () => {
      topology = await createTopology({ hosts: 1 })
      api = await startKubeApiserver({ netns: topology.switchNs, host: topology.switchIp })
    }, 120_000)
    afterAll(async () => {
      await api?.stop()
      await topology?.destroy()
    })

    it('listens on the namespace address, reachable from a namespace host and from this process', async () => {
      expect(api.url).toBe(`https://${topology.switchIp}:${api.port}`)
      expect(new URL(api.localUrl).hostname).toBe('127.0.0.1')
      await api.createNode('kit-ns', '10.244.5.0/24')

      const host = topology.hosts[0]!
      const kubeconfig = await api.writeKubeconfig({ server: api.url })
      const kc = JSON.parse(await readFile(kubeconfig, 'utf8')) as {
        users: { user: { token: string } }[]
      }
      const body = await nsExec(host.ns, 'curl', [
        '-sS',
        '--fail',
        '--cacert',
        api.caFile,
        '-H',
        `Authorization: Bearer ${kc.users[0]!.user.token}`,
        `${api.url}/api/v1/nodes/kit-ns`,
      ])
      expect((JSON.parse(body) as KubeNode).spec?.podCIDR).toBe('10.244.5.0/24')

      await api.restart()
      expect((await api.request('GET', '/api/v1/nodes/kit-ns')).status).toBe(200)
    })
  },
)
