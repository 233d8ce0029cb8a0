import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { isFlannelError, type LeaseEvent } from '@flannel/core'
import { KubeRegistry } from '@flannel/registry-kube'
import { BatchRecorder } from '@flannel/testkit/conformance'
import { kubeSkipReason, startKubeApiserver, type KubeApiserver } from '@flannel/testkit/kube'
import { Admin, MemoryLogger, registryFor, runPrefix } from './helpers.js'

const missing = kubeSkipReason()
if (missing) console.warn(`KubeRegistry integration tests skipped: ${missing}`)

const P = 'flannel.alpha.coreos.com/'
const NET = '{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}'
const attrs = (n: number, mac = `0a:58:0a:f4:0${n}:00`) => ({
  publicIP: `192.0.2.${n}`,
  backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: mac },
})

async function rejection(promise: Promise<unknown>): Promise<Error> {
  return promise.then(
    () => new Error('expected a rejection, the call resolved'),
    (err: unknown) => err as Error,
  )
}

const summary = (events: readonly LeaseEvent[]): string[] =>
  events.map((e) => `${e.type} ${e.lease.subnet.toString()} ${e.lease.attrs.publicIP}`)

describe.skipIf(missing !== undefined)(
  `KubeRegistry, kube-specific, on a real kube-apiserver${missing ? ` (skipped: ${missing})` : ''}`,
  { timeout: 90_000 },
  () => {
    let api: KubeApiserver
    let admin: Admin
    const run = runPrefix()
    let counter = 0
    const open: { close(): Promise<void> | void }[] = []
    const name = (): string => `${run}-n${++counter}`
    const registry = (
      node: string,
      extra: Parameters<typeof registryFor>[3] = {},
    ): KubeRegistry => {
      const r = registryFor(api, node, NET, extra)
      open.push(r)
      return r
    }
    const record = (r: KubeRegistry): BatchRecorder => {
      const rec = new BatchRecorder(r.watchLeases())
      open.push({ close: () => rec.unsubscribe() })
      return rec
    }

    beforeAll(async () => {
      api = await startKubeApiserver()
      admin = new Admin(api)
    }, 120_000)
    afterEach(async () => {
      for (const o of open.splice(0).reverse()) await o.close()
      await admin.deleteNodes(`${run}-`)
    })
    afterAll(async () => {
      await api?.stop()
    })

    it("publishes flanneld's annotation bytes on a Node with no annotations at all, and the condition", async () => {
      const node = name()
      await api.createNode(node, '10.244.7.0/24')
      expect((await admin.node(node)).metadata.annotations).toBeUndefined()
      const r = registry(node)
      const lease = await r.acquireLease(attrs(7))
      expect(lease.subnet.toString()).toBe('10.244.7.0/24')
      expect(lease.expiration.getTime()).toBeGreaterThan(Date.now() + 23 * 3600_000)
      expect((await admin.node(node)).metadata.annotations).toEqual({
        [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"0a:58:0a:f4:07:00"}',
        [`${P}backend-type`]: 'vxlan',
        [`${P}kube-subnet-manager`]: 'true',
        [`${P}public-ip`]: '192.0.2.7',
      })
      await r.markNetworkAvailable()
      const conditions = (await admin.node(node)).status?.conditions ?? []
      const c = conditions.find((x) => x.type === 'NetworkUnavailable')
      expect(c).toMatchObject({
        status: 'False',
        reason: 'FlannelIsUp',
        message: 'Flannel is running on this node',
      })
      expect(c?.lastTransitionTime).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/)
      expect(c?.lastHeartbeatTime).toBe(c?.lastTransitionTime)
    })

    it('sends no patch when the annotations are already right, and keeps foreign annotations', async () => {
      const node = name()
      await api.createNode(node, '10.244.8.0/24', { 'example.com/keep': 'me' })
      const r = registry(node)
      await r.acquireLease(attrs(8))
      const before = await admin.node(node)
      await registry(node).acquireLease(attrs(8))
      const after = await admin.node(node)
      expect(after.metadata.resourceVersion).toBe(before.metadata.resourceVersion)
      expect(after.metadata.annotations?.['example.com/keep']).toBe('me')
    })

    it('copies public-ip-overwrite into public-ip; the own lease keeps the detected address', async () => {
      const node = name()
      await api.createNode(node, '10.244.9.0/24', { [`${P}public-ip-overwrite`]: '198.51.100.9' })
      const lease = await registry(node).acquireLease(attrs(9))
      expect(lease.attrs.publicIP).toBe('192.0.2.9')
      expect((await admin.node(node)).metadata.annotations?.[`${P}public-ip`]).toBe('198.51.100.9')
    })

    it('reads node-public-ip(v6) as getStoredPublicIP()', async () => {
      const node = name()
      await api.createNode(node, '10.244.10.0/24', {
        [`${P}node-public-ip`]: '198.51.100.10',
      })
      expect(await registry(node).getStoredPublicIP()).toEqual({ publicIP: '198.51.100.10' })
    })

    it("storedAttrs() reads back what this Node carries (the vxlan backend's MAC on restart), undefined on a bare Node", async () => {
      const node = name()
      await api.createNode(node, '10.244.30.0/24')
      const r = registry(node)
      expect(await r.storedAttrs()).toBeUndefined()
      await r.acquireLease(attrs(30, '0a:58:0a:f4:1e:00'))
      expect(await registry(node).storedAttrs()).toEqual({
        backendType: 'vxlan',
        backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:1e:00' },
      })
      expect(r.revokesLeases).toBe(false)
    })

    it('a custom prefix: every key under it, peers read with it', async () => {
      const node = name()
      await api.createNode(node, '10.244.11.0/24')
      const r = registry(node, { annotationPrefix: 'example.com/net' })
      await r.acquireLease(attrs(11))
      const a = (await admin.node(node)).metadata.annotations ?? {}
      expect(Object.keys(a).sort()).toEqual([
        'example.com/net-backend-data',
        'example.com/net-backend-type',
        'example.com/net-kube-subnet-manager',
        'example.com/net-public-ip',
      ])
      const rec = record(registry(name(), { annotationPrefix: 'example.com/net' }))
      await rec.until('the snapshot', () => rec.batches.length === 1)
      expect(summary(rec.batches[0]!)).toEqual(['added 10.244.11.0/24 192.0.2.11'])
    })

    it('waits for a missing podCIDR, saying why, and starts once it is set', async () => {
      const node = name()
      await api.createNode(node)
      const logger = new MemoryLogger()
      const pending = registry(node, { logger }).acquireLease(attrs(12))
      let settled = false
      void pending.then(
        () => (settled = true),
        () => (settled = true),
      )
      for (let i = 0; i < 500 && !logger.has(`node "${node}" pod cidr not assigned`); i++) {
        await new Promise((r) => setTimeout(r, 10))
      }
      expect(logger.has(`node "${node}" pod cidr not assigned`)).toBe(true)
      expect(settled).toBe(false)
      await admin.patchNode(node, {
        spec: { podCIDR: '10.244.12.0/24', podCIDRs: ['10.244.12.0/24'] },
      })
      const lease = await pending
      expect(lease.subnet.toString()).toBe('10.244.12.0/24')
      expect((await admin.node(node)).metadata.annotations?.[`${P}kube-subnet-manager`]).toBe(
        'true',
      )
    })

    it("fails at once with flanneld's error when waitForPodCidr is false, and on abort while waiting", async () => {
      const node = name()
      await api.createNode(node)
      const err = await rejection(registry(node, { waitForPodCidr: false }).acquireLease(attrs(13)))
      expect(isFlannelError(err, 'KUBE_POD_CIDR_MISSING')).toBe(true)
      expect(err.message).toBe(`node "${node}" pod cidr not assigned`)
      const ac = new AbortController()
      const waiting = registry(node).acquireLease(attrs(13), { signal: ac.signal })
      setTimeout(() => ac.abort(), 300)
      expect(isFlannelError(await rejection(waiting), 'ABORTED')).toBe(true)
      expect((await admin.node(node)).metadata.annotations).toBeUndefined()
    })

    it("a missing Node ends with flanneld's timeout error after nodeWaitMs", async () => {
      const node = name()
      const err = await rejection(registry(node, { nodeWaitMs: 500 }).acquireLease(attrs(14)))
      expect(isFlannelError(err, 'KUBE_NODE_NOT_FOUND')).toBe(true)
      expect(err.message).toBe(
        `timeout contacting kube-api, failed to patch node "${node}". Error: context deadline exceeded`,
      )
    })

    it('a podCIDR outside Network fails with the CIDRs named, and nothing is published', async () => {
      const node = name()
      await api.createNode(node, '10.9.1.0/24')
      const err = await rejection(registry(node).acquireLease(attrs(15)))
      expect(isFlannelError(err, 'KUBE_POD_CIDR_INVALID')).toBe(true)
      expect(err.message).toBe(
        `subnet "10.244.0.0/16" specified in the flannel net config doesn't contain "10.9.1.0/24" PodCIDR of the "${node}" node`,
      )
      expect((await admin.node(node)).metadata.annotations).toBeUndefined()
    })

    it('forbidden: names the verb and the resource (patch nodes/status, list nodes)', async () => {
      const ns = `${run}-rbac`
      expect(
        (await api.request('POST', '/api/v1/namespaces', { metadata: { name: ns } })).status,
      ).toBe(201)
      open.push({
        close: async () => void (await api.request('DELETE', `/api/v1/namespaces/${ns}`)),
      })
      expect(
        (
          await api.request('POST', `/api/v1/namespaces/${ns}/serviceaccounts`, {
            metadata: { name: 'flannel' },
          })
        ).status,
      ).toBe(201)
      // flanneld's ClusterRole without nodes/status patch and without list/watch.
      const role = `${run}-get-only`
      await api.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterroles', {
        metadata: { name: role },
        rules: [{ apiGroups: [''], resources: ['nodes'], verbs: ['get'] }],
      })
      await api.request('POST', '/apis/rbac.authorization.k8s.io/v1/clusterrolebindings', {
        metadata: { name: role },
        roleRef: { apiGroup: 'rbac.authorization.k8s.io', kind: 'ClusterRole', name: role },
        subjects: [{ kind: 'ServiceAccount', name: 'flannel', namespace: ns }],
      })
      open.push({
        close: async () => {
          await api.request(
            'DELETE',
            `/apis/rbac.authorization.k8s.io/v1/clusterrolebindings/${role}`,
          )
          await api.request('DELETE', `/apis/rbac.authorization.k8s.io/v1/clusterroles/${role}`)
        },
      })
      const creds = await api.serviceAccountKubeconfig(ns, 'flannel')
      const node = name()
      await api.createNode(node, '10.244.16.0/24')
      const limited = new KubeRegistry({
        nodeName: node,
        kubeconfigPath: creds.kubeconfigPath,
        netConfig: NET,
      })
      open.push(limited)
      // RBAC may take a moment to see the new binding: GET succeeds once it does.
      for (let i = 0; i < 100; i++) {
        const res = await api.request('GET', `/api/v1/nodes/${node}`, undefined, {
          token: creds.token,
        })
        if (res.status === 200) break
        await new Promise((r) => setTimeout(r, 50))
      }
      const err = await rejection(limited.acquireLease(attrs(16)))
      expect(isFlannelError(err, 'KUBE_FORBIDDEN'), String(err)).toBe(true)
      expect(err).toMatchObject({
        verb: 'patch',
        resource: 'nodes/status',
        objectName: node,
        status: 403,
      })
      expect(err.message).toMatch(new RegExp(`^forbidden: cannot patch nodes/status "${node}": `))
      const rec = record(limited)
      await rec.until('the watch to fail', () => rec.error !== undefined)
      expect(rec.error).toMatchObject({ code: 'KUBE_FORBIDDEN', verb: 'list', resource: 'nodes' })
    })

    it('the watch heals after an API server restart: a re-list that emits only the differences', async () => {
      const [a, b, c] = [name(), name(), name()]
      await api.createNode(a, '10.244.21.0/24')
      await api.createNode(b, '10.244.22.0/24')
      await registry(a).acquireLease(attrs(21))
      await registry(b).acquireLease(attrs(22))
      const logger = new MemoryLogger()
      const rec = record(registry(name(), { logger }))
      await rec.until('the snapshot', () => rec.batches.length === 1)
      expect(summary(rec.batches[0]!).sort()).toEqual([
        'added 10.244.21.0/24 192.0.2.21',
        'added 10.244.22.0/24 192.0.2.22',
      ])
      await api.restart()
      await admin.deleteNode(b)
      await api.createNode(c, '10.244.23.0/24')
      await registry(c).acquireLease(attrs(23))
      await rec.until(
        'b removed and c added',
        () => {
          const events = summary(rec.batches.slice(1).flat())
          return (
            events.includes('removed 10.244.22.0/24 192.0.2.22') &&
            events.includes('added 10.244.23.0/24 192.0.2.23')
          )
        },
        60_000,
      )
      const after = summary(rec.batches.slice(1).flat())
      // Nothing for the unchanged node a, and each change exactly once.
      expect(after.filter((e) => e.includes('10.244.21.0'))).toEqual([])
      expect(after.sort()).toEqual([
        'added 10.244.23.0/24 192.0.2.23',
        'removed 10.244.22.0/24 192.0.2.22',
      ])
      expect(rec.error).toBeUndefined()
      expect(logger.has(/re-listing|resynchronised/)).toBe(true)
    }, 120_000)

    it('unsubscribing ends the watch on the server (apiserver_longrunning_requests)', async () => {
      // The API server's own count of open node watches, from its metrics.
      const watches = async (): Promise<number> => {
        const res = await api.request('GET', '/metrics')
        let total = 0
        for (const line of res.text.split('\n')) {
          if (!line.startsWith('apiserver_longrunning_requests{')) continue
          if (line.includes('resource="nodes"') && line.includes('verb="WATCH"')) {
            total += Number(line.split(' ').pop())
          }
        }
        return total
      }
      const settle = async (want: number): Promise<number> => {
        let n = await watches()
        for (let i = 0; i < 100 && n !== want; i++) {
          await new Promise((r) => setTimeout(r, 100))
          n = await watches()
        }
        return n
      }
      // The server's own informers watch nodes too: count from what is open
      // once the watches of earlier cases have finished closing.
      let base = await watches()
      for (let i = 0; i < 50; i++) {
        await new Promise((r) => setTimeout(r, 300))
        const now = await watches()
        if (now === base) break
        base = now
      }
      const rec = new BatchRecorder(registry(name()).watchLeases())
      await rec.until('the snapshot', () => rec.batches.length === 1)
      expect(await settle(base + 1)).toBe(base + 1)
      rec.unsubscribe()
      expect(await settle(base)).toBe(base)
    })
  },
)
