import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ExternalInterface, Logger } from '@flannel/core'
import { optionsFromFlags, startAgentCommand } from '@flannel/agent'
import {
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
} from '@flannel/testkit/kube'

const skip = kubeSkipReason()
if (skip) console.warn(`flannel-agent --kube-subnet-mgr integration test skipped: ${skip}`)

const P = 'flannel.alpha.coreos.com/'
const ext: ExternalInterface = {
  name: 'eth0',
  index: 2,
  mtu: 1500,
  ifaceAddr: '192.0.2.30',
  extAddr: '192.0.2.30',
}

/** Keeps every log message. */
function memoryLogger(lines: string[]): Logger {
  const log = (a: object | string, b?: string): void =>
    void lines.push(typeof a === 'string' ? a : (b ?? ''))
  const logger: Logger = {
    trace: log,
    debug: log,
    info: log,
    warn: log,
    error: log,
    child: () => logger,
  }
  return logger
}

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(skip)(
  `flannel-agent --kube-subnet-mgr on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let api: KubeApiserver
    let dir: string
    let auditLog: string
    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'flannel-kube-cmd-'))
      // Every request on nodes, with its user and verb, for the cases that
      // check which calls the agent makes.
      const policy = join(dir, 'audit-policy.json')
      auditLog = join(dir, 'audit.log')
      await writeFile(
        policy,
        JSON.stringify({
          apiVersion: 'audit.k8s.io/v1',
          kind: 'Policy',
          omitStages: ['RequestReceived'],
          rules: [
            { level: 'Metadata', resources: [{ group: '', resources: ['nodes', 'nodes/status'] }] },
            { level: 'None' },
          ],
        }),
      )
      api = await startKubeApiserver({
        extraArgs: [`--audit-policy-file=${policy}`, `--audit-log-path=${auditLog}`],
      })
    }, 120_000)
    afterAll(async () => {
      await api?.stop()
      await rm(dir, { recursive: true, force: true })
    })

    it("waits for the podCIDR with flanneld's message, then writes subnet.env, the annotations and the condition; SIGTERM exits 0", async () => {
      await api.createNode('kube-cmd-1')
      const netConf = join(dir, 'net-conf.json')
      await writeFile(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}')
      const subnetFile = join(dir, 'subnet.env')
      const lines: string[] = []
      const command = await startAgentCommand(
        optionsFromFlags(
          [
            '--kube-subnet-mgr',
            `--kubeconfig-file=${api.kubeconfigPath}`,
            `--net-config-path=${netConf}`,
            `--subnet-file=${subnetFile}`,
          ],
          {},
        ),
        {
          extIface: ext,
          hostRules: false,
          logger: memoryLogger(lines),
          env: { NODE_NAME: 'kube-cmd-1' },
        },
      )
      try {
        await until('the podCIDR message', () =>
          lines.some((l) => l.startsWith('node "kube-cmd-1" pod cidr not assigned')),
        )
        expect(lines).toContain('Created subnet manager: Kubernetes Subnet Manager - kube-cmd-1')
        expect(command.isReady()).toBe(false)
        const patch = await api.request(
          'PATCH',
          '/api/v1/nodes/kube-cmd-1',
          { spec: { podCIDR: '10.244.5.0/24', podCIDRs: ['10.244.5.0/24'] } },
          { contentType: 'application/strategic-merge-patch+json' },
        )
        expect(patch.status).toBe(200)
        await until('ready', () => command.isReady())
        expect(await readFile(subnetFile, 'utf8')).toContain('FLANNEL_SUBNET=10.244.5.1/24')
        await until('the condition', async () => {
          const node = (await api.request<KubeNode>('GET', '/api/v1/nodes/kube-cmd-1')).body
          return (
            node.status?.conditions?.some(
              (c) => c.type === 'NetworkUnavailable' && c.status === 'False',
            ) ?? false
          )
        })
        const node = (await api.request<KubeNode>('GET', '/api/v1/nodes/kube-cmd-1')).body
        // alloc publishes flanneld's empty backend-type and null data.
        expect(node.metadata.annotations).toEqual({
          [`${P}backend-data`]: 'null',
          [`${P}backend-type`]: '',
          [`${P}kube-subnet-manager`]: 'true',
          [`${P}public-ip`]: '192.0.2.30',
        })
      } finally {
        command.stop()
      }
      expect(await command.done).toEqual({ code: 0 })
    }, 90_000)

    it('with alloc neither lists nor watches nodes (flanneld: no informer), so get and patch nodes/status are all it needs', async () => {
      const ns = 'kube-cmd-alloc'
      const role = 'kube-cmd-alloc-get-patch'
      const node = 'kube-cmd-2'
      const created = await Promise.all([
        api.request('POST', '/api/v1/namespaces', { metadata: { name: ns } }),
        api.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
          metadata: { name: role },
          rules: [
            { apiGroups: [''], resources: ['nodes'], verbs: ['get'] },
            { apiGroups: [''], resources: ['nodes/status'], verbs: ['patch'] },
          ],
        }),
      ])
      expect(created.map((r) => r.status)).toEqual([201, 201])
      const more = [
        await api.request('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
          metadata: { name: 'flannel' },
        }),
        await api.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
          metadata: { name: role },
          roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
          subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: ns }],
        }),
      ]
      expect(more.map((r) => r.status)).toEqual([201, 201])
      await api.createNode(node, '10.244.6.0/24')
      const sa = await api.serviceAccountKubeconfig(ns, 'flannel')
      // The authorizer learns of the binding from its informer: start once it has.
      await until('the binding to take effect', async () => {
        const res = await api.request('GET', `/api/v1/nodes/${node}`, undefined, {
          token: sa.token,
        })
        return res.status === 200
      })
      const netConf = join(dir, 'net-conf-alloc.json')
      await writeFile(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}')
      const lines: string[] = []
      const command = await startAgentCommand(
        optionsFromFlags(
          [
            '--kube-subnet-mgr',
            `--kubeconfig-file=${sa.kubeconfigPath}`,
            `--net-config-path=${netConf}`,
            `--subnet-file=${join(dir, 'subnet-alloc.env')}`,
          ],
          {},
        ),
        { extIface: ext, hostRules: false, logger: memoryLogger(lines), env: { NODE_NAME: node } },
      )
      try {
        await until('ready', () => command.isReady())
        await until('the condition', () =>
          lines.includes('NetworkUnavailable condition set to False'),
        )
      } finally {
        command.stop()
      }
      // A list refused by RBAC would have ended the command with code 1.
      expect(await command.done).toEqual({ code: 0 })
      const calls = (await readFile(auditLog, 'utf8'))
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map(
          (l) =>
            JSON.parse(l) as {
              verb: string
              user: { username: string }
              objectRef?: { resource?: string; subresource?: string }
              responseStatus?: { code?: number }
            },
        )
        .filter((e) => e.user.username === sa.username)
        .map(
          (e) =>
            `${e.verb} ${e.objectRef?.resource ?? ''}${e.objectRef?.subresource ? `/${e.objectRef.subresource}` : ''} ${e.responseStatus?.code ?? ''}`,
        )
      expect(calls.filter((c) => /^(list|watch) /.test(c))).toEqual([])
      // (The test's own GETs with this token waited for the binding, 403 at first.)
      expect(calls.filter((c) => !/^(get nodes|patch nodes\/status) /.test(c))).toEqual([])
      expect(calls).toContain('patch nodes/status 200')
    }, 90_000)
  },
)
