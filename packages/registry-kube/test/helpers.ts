import { randomBytes } from 'node:crypto'
import type { Logger } from '@flannel/core'
import { KubeRegistry, type KubeRegistryOptions } from '@flannel/registry-kube'
import type { KubeApiserver, KubeNode } from '@flannel/testkit/kube'

/** A per-run name prefix for Nodes, so runs and cases never share one. */
export function runPrefix(): string {
  return `fk${randomBytes(2).toString('hex')}`
}

/** A logger that keeps every message (for asserting what an operator would read). */
export class MemoryLogger implements Logger {
  readonly lines: { level: string; msg: string; fields: object }[] = []
  private log(level: string) {
    return (a: object | string, b?: string): void => {
      if (typeof a === 'string') this.lines.push({ level, msg: a, fields: {} })
      else this.lines.push({ level, msg: b ?? '', fields: a })
    }
  }
  trace = this.log('trace')
  debug = this.log('debug')
  info = this.log('info')
  warn = this.log('warn')
  error = this.log('error')
  child(): Logger {
    return this
  }
  has(text: string | RegExp): boolean {
    return this.lines.some((l) =>
      typeof text === 'string' ? l.msg.includes(text) : text.test(l.msg),
    )
  }
}

/** Raw API calls as the admin, to arrange and inspect Nodes independently of the registry. */
export class Admin {
  constructor(private readonly api: KubeApiserver) {}

  async node(name: string): Promise<KubeNode> {
    const res = await this.api.request<KubeNode>('GET', `/api/v1/nodes/${name}`)
    if (res.status !== 200) throw new Error(`GET node ${name}: ${res.status} ${res.text}`)
    return res.body
  }

  async patchNode(name: string, patch: unknown, subresource = ''): Promise<void> {
    const res = await this.api.request('PATCH', `/api/v1/nodes/${name}${subresource}`, patch, {
      contentType: 'application/strategic-merge-patch+json',
    })
    if (res.status !== 200) throw new Error(`PATCH node ${name}: ${res.status} ${res.text}`)
  }

  async deleteNode(name: string): Promise<void> {
    const res = await this.api.request('DELETE', `/api/v1/nodes/${name}`)
    if (res.status !== 200 && res.status !== 404) {
      throw new Error(`DELETE node ${name}: ${res.status} ${res.text}`)
    }
  }

  /** Deletes every Node whose name starts with `prefix`. */
  async deleteNodes(prefix: string): Promise<void> {
    const res = await this.api.request<{ items?: KubeNode[] }>('GET', '/api/v1/nodes')
    for (const n of res.body.items ?? []) {
      if (n.metadata.name.startsWith(prefix)) await this.deleteNode(n.metadata.name)
    }
  }
}

/** A KubeRegistry for `nodeName` on the test API server (admin credentials). */
export function registryFor(
  api: KubeApiserver,
  nodeName: string,
  netConfig: string,
  extra: Partial<KubeRegistryOptions> = {},
): KubeRegistry {
  return new KubeRegistry({
    nodeName,
    cluster: { server: api.localUrl, ca: api.caPem, token: api.token },
    netConfig,
    ...extra,
  })
}
