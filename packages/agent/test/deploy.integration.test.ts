/**
 * deploy/flannel-agent.yml: what it holds (the kube-flannel objects, a
 * ClusterRole with exactly what flanneld's kube mode calls, spec/kube.md §8),
 * and that a real kube-apiserver accepts it (server-side dry run, then for
 * real) and grants the flannel ServiceAccount those calls only once the
 * ClusterRoleBinding exists.
 */
import { readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadAll } from 'js-yaml'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { parseNetworkConfig } from '@flannel/core'
import {
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
  type KubeObject,
  type KubeResponse,
} from '@flannel/testkit/kube'

const root = fileURLToPath(new URL('../../..', import.meta.url))
const manifestText = readFileSync(join(root, 'deploy/flannel-agent.yml'), 'utf8')
const readme = readFileSync(join(root, 'deploy/README.md'), 'utf8')

interface Rule {
  apiGroups: string[]
  resources: string[]
  verbs: string[]
}
interface EnvVar {
  name: string
  valueFrom?: { fieldRef?: { fieldPath: string } }
}
interface Container {
  name: string
  image: string
  command?: string[]
  args?: string[]
  env?: EnvVar[]
  securityContext?: { privileged?: boolean; capabilities?: { add?: string[] } }
  volumeMounts?: { name: string; mountPath: string }[]
}
interface Volume {
  name: string
  hostPath?: { path: string }
  configMap?: { name: string }
}
interface Manifest extends KubeObject {
  metadata: { name: string; namespace?: string; labels?: Record<string, string> }
  rules?: Rule[]
  roleRef?: { apiGroup: string; kind: string; name: string }
  subjects?: { kind: string; name: string; namespace?: string }[]
  data?: Record<string, string>
  spec?: {
    template: {
      spec: {
        hostNetwork?: boolean
        serviceAccountName?: string
        containers: Container[]
        initContainers?: Container[]
        volumes?: Volume[]
      }
    }
  }
}

const docs = (loadAll(manifestText) as (Manifest | null)[]).filter((d): d is Manifest => d !== null)
const one = (kind: string): Manifest => {
  const found = docs.filter((d) => d.kind === kind)
  expect(found, kind).toHaveLength(1)
  return found[0]!
}

/** The API calls of flanneld's kube subnet manager, as RBAC (spec/kube.md §8). */
const NEEDED = ['/pods/get', '/nodes/get', '/nodes/list', '/nodes/watch', '/nodes/status/patch']

/** Rules as a sorted set of `<group>/<resource>/<verb>`. */
function expand(rules: readonly { apiGroups?: string[]; resources?: string[]; verbs: string[] }[]) {
  const out = new Set<string>()
  for (const r of rules)
    for (const g of r.apiGroups ?? [])
      for (const res of r.resources ?? []) for (const v of r.verbs) out.add(`${g}/${res}/${v}`)
  return [...out].sort()
}

describe('deploy/flannel-agent.yml', () => {
  it('holds the kube-flannel objects in the order they can be applied', () => {
    expect(docs.map((d) => `${d.kind}/${d.metadata.name}`)).toEqual([
      'Namespace/kube-flannel',
      'ServiceAccount/flannel',
      'ClusterRole/flannel',
      'ClusterRoleBinding/flannel',
      'ConfigMap/kube-flannel-cfg',
      'DaemonSet/kube-flannel-ds',
    ])
    expect(one('Namespace').metadata.labels?.['pod-security.kubernetes.io/enforce']).toBe(
      'privileged',
    )
  })

  it('grants exactly what the kube subnet manager calls, to the flannel ServiceAccount', () => {
    expect(expand(one('ClusterRole').rules!)).toEqual([...NEEDED].sort())
    const binding = one('ClusterRoleBinding')
    expect(binding.roleRef).toEqual({
      apiGroup: 'rbac.authorization.k8s.io',
      kind: 'ClusterRole',
      name: 'flannel',
    })
    expect(binding.subjects).toEqual([
      { kind: 'ServiceAccount', name: 'flannel', namespace: 'kube-flannel' },
    ])
  })

  it('configures a network flannel-agent accepts and the flannel CNI conflist', () => {
    const data = one('ConfigMap').data!
    const config = parseNetworkConfig(data['net-conf.json']!)
    expect(config.network?.toString()).toBe('10.244.0.0/16')
    expect(config.backendType).toBe('vxlan')
    const cni = JSON.parse(data['cni-conf.json']!) as {
      name: string
      cniVersion: string
      plugins: { type: string }[]
    }
    expect(cni.name).toBe('cbr0')
    expect(cni.plugins.map((p) => p.type)).toEqual(['flannel', 'portmap'])
  })

  it('runs flannel-agent in kube mode on the host network with the node name from the downward API', () => {
    const ds = one('DaemonSet')
    const pod = ds.spec!.template.spec
    expect(pod.hostNetwork).toBe(true)
    expect(pod.serviceAccountName).toBe(one('ServiceAccount').metadata.name)
    const agent = pod.containers.find((c) => c.name === 'kube-flannel')!
    expect([...(agent.command ?? []), ...(agent.args ?? [])]).toEqual(
      expect.arrayContaining(['flannel-agent', '--ip-masq', '--kube-subnet-mgr']),
    )
    expect(agent.command?.[0]).toBe('flannel-agent')
    const fieldOf = (name: string) =>
      agent.env?.find((e) => e.name === name)?.valueFrom?.fieldRef?.fieldPath
    expect(fieldOf('NODE_NAME')).toBe('spec.nodeName')
    expect(fieldOf('POD_NAME')).toBe('metadata.name')
    expect(fieldOf('POD_NAMESPACE')).toBe('metadata.namespace')
    expect(agent.securityContext?.privileged).toBe(false)
    expect(agent.securityContext?.capabilities?.add?.sort()).toEqual(['NET_ADMIN', 'NET_RAW'])
    // /run/flannel (subnet.env for the CNI plugin) from the host, net-conf.json from the ConfigMap
    const volume = (mountPath: string) => {
      const mount = agent.volumeMounts?.find((m) => m.mountPath.replace(/\/$/, '') === mountPath)
      return pod.volumes?.find((v) => v.name === mount?.name)
    }
    expect(volume('/run/flannel')?.hostPath?.path).toBe('/run/flannel')
    expect(volume('/etc/kube-flannel')?.configMap?.name).toBe(one('ConfigMap').metadata.name)
  })

  it('uses one image placeholder for flannel-agent, the one deploy/README.md tells to replace', () => {
    const pod = one('DaemonSet').spec!.template.spec
    const images = new Set(
      [...pod.containers, ...(pod.initContainers ?? [])]
        .map((c) => c.image)
        .filter((i) => !i.startsWith('ghcr.io/flannel-io/')),
    )
    expect(images.size).toBe(1)
    const [image] = [...images]
    expect(readme).toContain(image)
  })
})

const skip = kubeSkipReason()

describe.skipIf(skip)(
  `deploy/flannel-agent.yml against kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let api: KubeApiserver
    const namespace = one('Namespace')
    const binding = one('ClusterRoleBinding')
    const rest = docs.filter((d) => d !== namespace)

    beforeAll(async () => {
      api = await startKubeApiserver()
    }, 120_000)
    afterAll(async () => {
      await api?.stop()
    })

    const stored = async (doc: Manifest): Promise<number> =>
      (await api.request('GET', await api.resourcePath(doc))).status
    const expectApplied = (res: KubeResponse, what: string) =>
      expect([200, 201], `${what}: ${res.text}`).toContain(res.status)

    it('passes a server-side dry run of every object, which stores nothing', async () => {
      expectApplied(await api.apply(namespace, { dryRun: true }), 'Namespace (dry run)')
      expect(await stored(namespace)).toBe(404)
      // The namespaced objects can only be admitted into an existing namespace.
      expectApplied(await api.apply(namespace), 'Namespace')
      for (const doc of rest) {
        expectApplied(await api.apply(doc, { dryRun: true }), `${doc.kind} (dry run)`)
        expect(await stored(doc), `${doc.kind} stored by a dry run`).toBe(404)
      }
      // The dry run validates: a misspelt field is refused.
      const ds = one('DaemonSet')
      const typo = await api.apply({ ...ds, spec: { ...ds.spec, tempalte: {} } }, { dryRun: true })
      expect(typo.status).toBeGreaterThanOrEqual(400)
      expect(typo.text).toMatch(/tempalte/)
    })

    it('grants the flannel ServiceAccount what the agent calls, only through the ClusterRoleBinding', async () => {
      for (const doc of docs.filter((d) => d !== binding))
        expectApplied(await api.apply(doc), doc.kind)
      const node = 'deploy-node-1'
      await api.createNode(node, '10.244.7.0/24')
      const sa = await api.serviceAccountKubeconfig('kube-flannel', 'flannel')

      const rules = async (): Promise<string[]> => {
        const res = await api.request<{ status: { resourceRules: Rule[] } }>(
          'POST',
          '/apis/authorization.k8s.io/v1/selfsubjectrulesreviews',
          {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectRulesReview',
            spec: { namespace: 'kube-flannel' },
          },
          { token: sa.token },
        )
        expect(res.status).toBe(201)
        return expand(res.body.status.resourceRules)
      }
      const allowed = async (verb: string, resource: string, subresource = '') => {
        const res = await api.request<{ status: { allowed: boolean } }>(
          'POST',
          '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews',
          {
            apiVersion: 'authorization.k8s.io/v1',
            kind: 'SelfSubjectAccessReview',
            spec: {
              resourceAttributes: { verb, resource, subresource, namespace: 'kube-flannel' },
            },
          },
          { token: sa.token },
        )
        expect(res.status).toBe(201)
        return res.body.status.allowed
      }
      const as = { token: sa.token }
      /** What the agent does in kube mode, each answering with a status. */
      const calls: [string, () => Promise<number>][] = [
        [
          'get node',
          async () => (await api.request('GET', `/api/v1/nodes/${node}`, undefined, as)).status,
        ],
        [
          'list nodes',
          async () => (await api.request('GET', '/api/v1/nodes', undefined, as)).status,
        ],
        [
          'watch nodes',
          async () => {
            try {
              ;(await api.watch('/api/v1/nodes', as)).close()
              return 200
            } catch (err) {
              return Number(/HTTP (\d+)/.exec(String(err))?.[1] ?? 0)
            }
          },
        ],
        [
          'patch nodes/status',
          async () =>
            (
              await api.request(
                'PATCH',
                `/api/v1/nodes/${node}/status`,
                {
                  metadata: {
                    annotations: {
                      'flannel.alpha.coreos.com/kube-subnet-manager': 'true',
                      'flannel.alpha.coreos.com/public-ip': '192.0.2.7',
                    },
                  },
                  status: {
                    conditions: [
                      { type: 'NetworkUnavailable', status: 'False', reason: 'FlannelIsUp' },
                    ],
                  },
                },
                as,
              )
            ).status,
        ],
        // No such pod: 404 when allowed to look, 403 when not.
        [
          'get pod',
          async () =>
            (await api.request('GET', '/api/v1/namespaces/kube-flannel/pods/none', undefined, as))
              .status,
        ],
      ]

      const baseline = await rules()
      for (const [what, call] of calls)
        expect(await call(), `${what} without the binding`).toBe(403)
      expect(await allowed('list', 'nodes')).toBe(false)

      expectApplied(await api.apply(binding), 'ClusterRoleBinding')
      // The authorizer learns of the binding from its informer: wait until it has.
      const deadline = Date.now() + 30_000
      while (!(await allowed('list', 'nodes'))) {
        if (Date.now() > deadline) throw new Error('the ClusterRoleBinding never took effect')
        await new Promise((resolve) => setTimeout(resolve, 50))
      }

      const granted = (await rules()).filter((r) => !baseline.includes(r))
      expect(granted).toEqual([...NEEDED].sort())
      const statuses = Object.fromEntries(
        await Promise.all(calls.map(async ([what, call]) => [what, await call()] as const)),
      )
      expect(statuses).toEqual({
        'get node': 200,
        'list nodes': 200,
        'watch nodes': 200,
        'patch nodes/status': 200,
        'get pod': 404,
      })
      const after = await api.request<KubeNode>('GET', `/api/v1/nodes/${node}`)
      expect(after.body.metadata.annotations?.['flannel.alpha.coreos.com/public-ip']).toBe(
        '192.0.2.7',
      )
      expect(after.body.status?.conditions).toContainEqual(
        expect.objectContaining({ type: 'NetworkUnavailable', status: 'False' }),
      )
      // Nothing more: the node object itself (annotations go through status), deleting, other kinds.
      const patchNode = await api.request(
        'PATCH',
        `/api/v1/nodes/${node}`,
        { metadata: { labels: { a: 'b' } } },
        as,
      )
      expect(patchNode.status).toBe(403)
      for (const [verb, resource, sub] of [
        ['update', 'nodes', 'status'],
        ['delete', 'nodes', ''],
        ['create', 'nodes', ''],
        ['list', 'pods', ''],
        ['get', 'secrets', ''],
        ['get', 'configmaps', ''],
      ] as const) {
        expect(await allowed(verb, resource, sub), `${verb} ${resource}/${sub}`).toBe(false)
      }
    })
  },
)
