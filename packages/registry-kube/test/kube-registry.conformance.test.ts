import type { Observable } from 'rxjs'
import { afterAll, beforeAll, describe } from 'vitest'
import type {
  AcquireOptions,
  CallOptions,
  Lease,
  LeaseAttrs,
  LeaseEvent,
  NetworkConfig,
  SubnetRegistry,
} from '@flannel/core'
import type { KubeRegistry } from '@flannel/registry-kube'
import { describeRegistryConformance } from '@flannel/testkit/conformance'
import { kubeSkipReason, startKubeApiserver, type KubeApiserver } from '@flannel/testkit/kube'
import { Admin, registryFor, runPrefix } from './helpers.js'

const missing = kubeSkipReason()
if (missing) console.warn(`KubeRegistry conformance skipped: ${missing}`)

/**
 * The suite acquires leases for several hosts through one registry; in kube
 * mode every host is a Node with its own registry. This facade routes each
 * call to the registry of the host whose PublicIP it carries (192.0.2.<n>,
 * Node `<prefix>-h<n>` with podCIDR 10.5.<n>.0/24), and watches through one
 * more registry, as a peer would.
 */
class Hosts implements SubnetRegistry {
  private readonly registries = new Map<string, KubeRegistry>()
  private readonly watcher: KubeRegistry

  constructor(
    private readonly api: KubeApiserver,
    private readonly admin: Admin,
    private readonly prefix: string,
    private readonly config: string,
  ) {
    this.watcher = registryFor(api, `${prefix}-watcher`, config)
  }

  nodeOf(publicIP: string): string {
    return `${this.prefix}-h${publicIP.split('.').pop()}`
  }

  private async host(publicIP: string): Promise<KubeRegistry> {
    const name = this.nodeOf(publicIP)
    let registry = this.registries.get(name)
    if (registry === undefined) {
      registry = registryFor(this.api, name, this.config)
      this.registries.set(name, registry)
      const n = Number(publicIP.split('.').pop())
      if (Number.isInteger(n) && /^192\.0\.2\.\d+$/.test(publicIP)) {
        await this.api.createNode(name, `10.5.${n}.0/24`)
      }
    }
    return registry
  }

  getNetworkConfig(opts?: CallOptions): Promise<NetworkConfig> {
    return this.watcher.getNetworkConfig(opts)
  }
  async acquireLease(attrs: LeaseAttrs, opts?: AcquireOptions): Promise<Lease> {
    return (await this.host(attrs.publicIP)).acquireLease(attrs, opts)
  }
  async renewLease(lease: Lease, opts?: CallOptions): Promise<Lease> {
    return (await this.host(lease.attrs.publicIP)).renewLease(lease, opts)
  }
  async releaseLease(lease: Lease, opts?: CallOptions): Promise<void> {
    return (await this.host(lease.attrs.publicIP)).releaseLease(lease, opts)
  }
  watchLeases(): Observable<LeaseEvent[]> {
    return this.watcher.watchLeases()
  }
  async close(): Promise<void> {
    await this.watcher.close()
    for (const r of this.registries.values()) await r.close()
    await this.admin.deleteNodes(`${this.prefix}-`)
  }
}

describe.skipIf(missing !== undefined)(
  `KubeRegistry on a real kube-apiserver${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let api: KubeApiserver
    let admin: Admin
    const run = runPrefix()
    let counter = 0

    beforeAll(async () => {
      api = await startKubeApiserver()
      admin = new Admin(api)
    })
    afterAll(async () => {
      await admin?.deleteNodes(`${run}-`)
      await api?.stop()
    })

    describeRegistryConformance(
      'KubeRegistry',
      async (config) => {
        const hosts = new Hosts(api, admin, `${run}-c${++counter}`, config)
        return {
          registry: hosts,
          // A peer goes away when its Node is deleted.
          remove: (lease: Lease) => admin.deleteNode(hosts.nodeOf(lease.attrs.publicIP)),
          close: () => hosts.close(),
        }
      },
      {
        unsupported: {
          allocation:
            'kube mode takes the Node podCIDR; nothing is allocated from SubnetMin..SubnetMax (flanneld ignores them there)',
          renewal: 'kube leases have no TTL: renewLease sends nothing and watchers see nothing',
          release:
            'flanneld never removes its annotations; only deleting the Node removes a peer (the removal case does that)',
        },
      },
    )
  },
)
