import { readFile } from 'node:fs/promises'
import { setMaxListeners } from 'node:events'
import type { Observable } from 'rxjs'
import {
  AbortError,
  ConfigError,
  FlannelError,
  isFlannelError,
  parseNetworkConfig,
  throwIfAborted,
  type AcquireOptions,
  type CallOptions,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
  type StoredAttrs,
  type SubnetRegistry,
} from '@flannel/core'
import { decodeBackendData, encodeLeaseAttrs, sleep } from '@flannel/core/registry'
import {
  annotationKeys,
  annotationPatchBody,
  logOverrides,
  planAnnotations,
  type AnnotationKeys,
} from './annotations.js'
import { GoneError, KubeClient, type KubeRequest, type WatchEnd } from './client.js'
import { KubeApiError, NodeNameError, NodeNotFoundError, PodCidrMissingError } from './errors.js'
import { buildKubeConfig } from './kubeconfig.js'
import { ownLeaseSubnets, ownNodeCidrs, type NodeObject } from './node.js'
import { resolveOptions, type KubeRegistryOptions, type ResolvedOptions } from './options.js'
import { watchNodeLeases, type NodeListing, type NodeWatchEvent } from './watch.js'

/** The own lease's cosmetic expiration: flanneld's now + 24 h (kube leases never expire). */
export const KUBE_LEASE_LIFETIME_MS = 24 * 60 * 60_000
/** flanneld's poll interval while the Node is missing (3 s). */
const NODE_POLL_MS = 3_000
/** `timeoutSeconds` of a node watch: a random value in [5, 10) minutes, as client-go's reflector. */
const WATCH_MIN_SECONDS = 300
/** The content type of flanneld's patches. */
const STRATEGIC_MERGE = 'application/strategic-merge-patch+json'

/** Public addresses an operator pinned with `node-public-ip(v6)` annotations. */
export interface StoredPublicIPs {
  /** `node-public-ip`, replacing `--public-ip` when set. */
  readonly publicIP?: string | undefined
  /** `node-public-ipv6`, replacing `--public-ipv6` when set. */
  readonly publicIPv6?: string | undefined
}

/** Backends whose kube lease carries an IPv6 subnet (flanneld: only these do dual-stack). */
const DUAL_STACK_BACKENDS = new Set(['vxlan', 'host-gw', 'wireguard'])

/** Go's `metav1.Time` text: RFC 3339 in UTC, whole seconds. */
function kubeTime(date: Date): string {
  return `${date.toISOString().slice(0, 19)}Z`
}

/**
 * A `SubnetRegistry` on the Kubernetes API, as flanneld's
 * `--kube-subnet-mgr` (spec: kube.md): the network config from net-conf.json,
 * this host's lease taken from its Node's `spec.podCIDR(s)`, the attributes
 * published as flanneld's annotations (same keys and value bytes) through
 * `nodes/<n>/status`, peers from a list+watch of all Nodes that heals itself
 * by re-listing and emitting only the difference.
 *
 * @example
 * ```ts
 * const registry = new KubeRegistry({ nodeName: 'node-1', kubeconfigPath: './kubeconfig' })
 * const lease = await registry.acquireLease({ publicIP: '192.0.2.10', backendType: 'host-gw' })
 * await registry.markNetworkAvailable()
 * await registry.close()
 * ```
 */
export class KubeRegistry implements SubnetRegistry {
  private readonly options: ResolvedOptions
  private readonly raw: KubeRegistryOptions
  private readonly keys: AnnotationKeys
  private readonly logger: Logger
  /** Kube leases are podCIDRs without TTL: nothing revokes them (the Agent does not watch its own). */
  readonly revokesLeases = false
  private readonly closeController = new AbortController()
  private clientPromise: Promise<KubeClient> | undefined
  private configPromise: Promise<NetworkConfig> | undefined
  private nodeNamePromise: Promise<string> | undefined
  private closed = false

  /**
   * @throws InvalidArgumentError naming the option when an option is invalid.
   * @throws AnnotationPrefixError with flanneld's message for a bad `annotationPrefix`.
   */
  constructor(options: KubeRegistryOptions) {
    this.options = resolveOptions(options)
    this.raw = options
    this.keys = annotationKeys(this.options.annotationPrefix)
    setMaxListeners(0, this.closeController.signal)
    this.logger = this.options.logger.child({ component: 'kube-registry' })
  }

  /** The annotation keys in use (normalised prefix). */
  get annotations(): AnnotationKeys {
    return this.keys
  }

  /** The API server's URL, once connected. */
  async apiUrl(): Promise<string> {
    return (await this.client()).url
  }

  /**
   * This host's Node name: `nodeName`, else `spec.nodeName` of the pod
   * `pod` (one GET, as flanneld), cached.
   *
   * @throws NodeNameError with flanneld's text when there is neither, or the pod has no node.
   */
  async nodeName(opts: CallOptions = {}): Promise<string> {
    const signal = this.signalFor(opts.signal)
    this.nodeNamePromise ??= this.lookupNodeName(signal)
    this.nodeNamePromise.catch(() => (this.nodeNamePromise = undefined))
    return await raceSignal(this.nodeNamePromise, signal)
  }

  /**
   * The network config from `netConfig` or the net-conf.json file, read once
   * and decoded without etcd mode's checks (kube mode ignores `SubnetLen`,
   * `SubnetMin`, `SubnetMax`).
   *
   * @throws ConfigError `failed to read net conf: ...` or `error parsing subnet config: ...`.
   */
  async getNetworkConfig(opts: CallOptions = {}): Promise<NetworkConfig> {
    const signal = this.signalFor(opts.signal)
    this.configPromise ??= this.loadConfig()
    this.configPromise.catch(() => (this.configPromise = undefined))
    return await raceSignal(this.configPromise, signal)
  }

  /**
   * Publishes `attrs` on this host's Node and returns the lease of its
   * podCIDR(s) (spec: kube.md section 4): waits up to `nodeWaitMs` for the
   * Node, waits for a podCIDR (unless `waitForPodCidr` is false), patches
   * the annotations through `nodes/<n>/status` only when flanneld would, and
   * checks the CIDRs against the config. Transient API faults are retried
   * with backoff until `opts.signal` aborts. `opts.previous` is ignored, as
   * in flanneld's kube mode.
   *
   * @throws InvalidArgumentError when `attrs` cannot be encoded (nothing is written).
   * @throws NodeNotFoundError when the Node does not appear within `nodeWaitMs`.
   * @throws PodCidrMissingError without a podCIDR when `waitForPodCidr` is false.
   * @throws PodCidrError for unusable podCIDRs, or ones outside `Network`/`IPv6Network`.
   * @throws KubeForbiddenError when RBAC refuses (names the verb and resource).
   * @throws AbortError when `opts.signal` aborts.
   */
  async acquireLease(attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const signal = this.signalFor(opts.signal)
    encodeLeaseAttrs(attrs) // validate before any request
    const config = await this.getNetworkConfig({ signal })
    const name = await this.nodeName({ signal })
    const client = await this.client()
    let node = await this.waitForNode(client, name, signal)
    if (!node.spec?.podCIDR) node = await this.waitForPodCidr(client, name, signal)
    const cidrs = ownNodeCidrs(node, name)
    const type = attrs.backendType ?? ''
    const family = DUAL_STACK_BACKENDS.has(type) ? cidrs : { ipv4: cidrs.ipv4 }
    // Checked before publishing (flanneld publishes first): a node whose
    // podCIDR the network does not hold is never announced to peers.
    const { subnet, ipv6Subnet } = ownLeaseSubnets(config, family, name)
    const plan = planAnnotations(this.keys, node.metadata?.annotations ?? undefined, attrs)
    if (plan.changed) {
      logOverrides(this.logger, plan, this.keys)
      await client.call<NodeObject>(
        {
          verb: 'patch',
          resource: 'nodes/status',
          name,
          method: 'PATCH',
          path: `/api/v1/nodes/${encodeURIComponent(name)}/status`,
          body: annotationPatchBody(plan.set),
          contentType: STRATEGIC_MERGE,
        },
        signal,
      )
      this.logger.info(
        { node: name, annotations: Object.keys(plan.set) },
        'node annotations patched',
      )
    }
    return {
      subnet,
      ipv6Subnet,
      attrs,
      expiration: new Date(Date.now() + KUBE_LEASE_LIFETIME_MS),
    }
  }

  /**
   * Kube leases have no TTL: nothing is sent. Returns the lease with a fresh
   * cosmetic expiration (now + 24 h), so an agent's renewal timer stays quiet.
   */
  async renewLease(lease: Lease, opts: CallOptions = {}): Promise<Lease> {
    this.signalFor(opts.signal)
    return { ...lease, expiration: new Date(Date.now() + KUBE_LEASE_LIFETIME_MS) }
  }

  /**
   * Does nothing, as flanneld's kube mode: the annotations stay on the Node
   * (flanneld never removes them), and only deleting the Node removes the
   * lease for peers.
   */
  async releaseLease(_lease: Lease, opts: CallOptions = {}): Promise<void> {
    this.signalFor(opts.signal)
  }

  /**
   * Cold stream of the peers' leases (this host's included): on subscribe
   * one batch with every flannel Node's lease as `added`, then one batch per
   * change. A changed podCIDR gives `removed` + `added`; a deleted Node or
   * a removed marker gives `removed` with the last attributes. After a
   * dropped connection, an API server restart or a 410 Gone it re-lists and
   * emits only the differences; while the server is away it stays silent
   * and retries with backoff. Completes when the registry is closed.
   */
  watchLeases(): Observable<LeaseEvent[]> {
    return watchNodeLeases(
      {
        config: (signal) => this.getNetworkConfig({ signal }),
        list: (signal) => this.listNodes(signal),
        watch: (rv, onEvent, signal) => this.watchNodes(rv, onEvent, signal),
      },
      {
        keys: this.keys,
        logger: this.logger,
        random: this.options.random,
        closed: this.closeController.signal,
      },
    )
  }

  /**
   * The `node-public-ip(v6)` annotations of this host's Node (one GET, as
   * flanneld's `GetStoredPublicIP` at start-up). A failed GET is logged
   * (`Failed to get node for backend data: ...`) and gives no addresses.
   */
  async getStoredPublicIP(opts: CallOptions = {}): Promise<StoredPublicIPs> {
    const signal = this.signalFor(opts.signal)
    const name = await this.nodeName({ signal })
    let node: NodeObject
    try {
      node = await (await this.client()).call<NodeObject>(this.getNodeRequest(name), signal)
    } catch (err) {
      if (err instanceof AbortError || signal.aborted) throw err
      this.logger.error({ err }, `Failed to get node for backend data: ${(err as Error).message}`)
      return {}
    }
    const a = node.metadata?.annotations ?? {}
    this.logger.info({ node: name, annotations: a }, `List of node(${name}) annotations`)
    const publicIP = a[this.keys.nodePublicIP] || undefined
    const publicIPv6 = a[this.keys.nodePublicIPv6] || undefined
    return { ...(publicIP ? { publicIP } : {}), ...(publicIPv6 ? { publicIPv6 } : {}) }
  }

  /**
   * The backend type and data this host's Node carries (one GET, as
   * flanneld's `GetStoredMacAddresses` when the vxlan backend starts): the
   * vxlan backend gives a device it creates the `VtepMAC` found here, so a
   * restart after a reboot keeps the published MAC. Read with the normalised
   * prefix (flanneld builds these keys from the raw prefix and so misses
   * them for any prefix with a `/`). A failed GET is logged
   * (`Failed to get node for backend data: ...`) and gives undefined.
   */
  async storedAttrs(opts: CallOptions = {}): Promise<StoredAttrs | undefined> {
    const signal = this.signalFor(opts.signal)
    const name = await this.nodeName({ signal })
    let node: NodeObject
    try {
      node = await (await this.client()).call<NodeObject>(this.getNodeRequest(name), signal)
    } catch (err) {
      if (err instanceof AbortError || signal.aborted) throw err
      this.logger.error({ err }, `Failed to get node for backend data: ${(err as Error).message}`)
      return undefined
    }
    const a = node.metadata?.annotations ?? {}
    this.logger.info({ node: name, annotations: a }, `List of node(${name}) annotations`)
    const backendType = a[this.keys.backendType]
    const backendData = decodeBackendData(a[this.keys.backendData])
    const backendV6Data = decodeBackendData(a[this.keys.backendV6Data])
    if (backendType === undefined && backendData === undefined && backendV6Data === undefined) {
      return undefined
    }
    return {
      ...(backendType === undefined ? {} : { backendType }),
      ...(backendData === undefined ? {} : { backendData }),
      ...(backendV6Data === undefined ? {} : { backendV6Data }),
    }
  }

  /**
   * Sets this host's `NetworkUnavailable` condition to `False` (reason
   * `FlannelIsUp`, message `Flannel is running on this node`, both times
   * now), with flanneld's one strategic-merge patch of `nodes/<n>/status`
   * (spec: kube.md section 3.4). Call it once the network is ready. Transient
   * faults are retried until `opts.signal` aborts.
   *
   * @throws KubeForbiddenError when RBAC refuses `patch nodes/status`.
   */
  async markNetworkAvailable(opts: CallOptions = {}): Promise<void> {
    const signal = this.signalFor(opts.signal)
    const name = await this.nodeName({ signal })
    const now = kubeTime(new Date())
    const condition = {
      type: 'NetworkUnavailable',
      status: 'False',
      lastHeartbeatTime: now,
      lastTransitionTime: now,
      reason: 'FlannelIsUp',
      message: 'Flannel is running on this node',
    }
    await (
      await this.client()
    ).call(
      {
        verb: 'patch',
        resource: 'nodes/status',
        name,
        method: 'PATCH',
        path: `/api/v1/nodes/${encodeURIComponent(name)}/status`,
        body: JSON.stringify({ status: { conditions: [condition] } }),
        contentType: STRATEGIC_MERGE,
      },
      signal,
    )
  }

  /** Stops every watch and pending call. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closeController.abort()
    await new Promise((resolve) => setImmediate(resolve))
  }

  // -------------------------------------------------------------------------

  private client(): Promise<KubeClient> {
    this.clientPromise ??= buildKubeConfig(this.raw).then(
      (kc) =>
        new KubeClient(kc, {
          attemptTimeoutMs: this.options.attemptTimeoutMs,
          random: this.options.random,
          logger: this.logger,
        }),
    )
    this.clientPromise.catch(() => (this.clientPromise = undefined))
    return this.clientPromise
  }

  private async loadConfig(): Promise<NetworkConfig> {
    const given = this.options.netConfig
    if (given !== undefined && isNetworkConfig(given)) return given
    let text: string | object
    if (given !== undefined) text = given
    else {
      const path = this.options.netConfigPath
      try {
        text = await readFile(path, 'utf8')
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        const detail = code === 'ENOENT' ? 'no such file or directory' : (err as Error).message
        throw new ConfigError(
          `failed to read net conf: open ${path}: ${detail}`,
          'netConfigPath',
          path,
          {
            cause: err,
          },
        )
      }
    }
    try {
      return parseNetworkConfig(text, { check: false })
    } catch (err) {
      if (
        isFlannelError(err, 'CONFIG_INVALID') &&
        (err as ConfigError).message === 'none defined stack'
      ) {
        throw err
      }
      const e = err as ConfigError
      throw new ConfigError(`error parsing subnet config: ${e.message}`, e.field, e.value, {
        cause: err,
      })
    }
  }

  private async lookupNodeName(signal: AbortSignal): Promise<string> {
    if (this.options.nodeName !== undefined) return this.options.nodeName
    const pod = this.options.pod
    if (pod === undefined)
      throw new NodeNameError('env variables POD_NAME and POD_NAMESPACE must be set')
    let found: { spec?: { nodeName?: string } }
    try {
      found = await (
        await this.client()
      ).call(
        {
          verb: 'get',
          resource: 'pods',
          name: pod.name,
          method: 'GET',
          path: `/api/v1/namespaces/${encodeURIComponent(pod.namespace)}/pods/${encodeURIComponent(pod.name)}`,
        },
        signal,
      )
    } catch (err) {
      if (err instanceof AbortError || signal.aborted) throw err
      throw new NodeNameError(
        `error retrieving pod spec for '${pod.namespace}/${pod.name}': ${(err as Error).message}`,
        { cause: err },
      )
    }
    const nodeName = found.spec?.nodeName
    if (!nodeName)
      throw new NodeNameError(`node name not present in pod spec '${pod.namespace}/${pod.name}'`)
    return nodeName
  }

  private getNodeRequest(name: string): KubeRequest {
    return {
      verb: 'get',
      resource: 'nodes',
      name,
      method: 'GET',
      path: `/api/v1/nodes/${encodeURIComponent(name)}`,
    }
  }

  /** GETs the Node, polling every 3 s while it does not exist, up to `nodeWaitMs`. */
  private async waitForNode(
    client: KubeClient,
    name: string,
    signal: AbortSignal,
  ): Promise<NodeObject> {
    const deadline = Date.now() + this.options.nodeWaitMs
    for (;;) {
      try {
        return await client.call<NodeObject>(this.getNodeRequest(name), signal)
      } catch (err) {
        if (!(err instanceof KubeApiError && err.status === 404)) throw err
        this.logger.debug({ node: name }, `node "${name}" does not exist `)
        const left = deadline - Date.now()
        if (left <= 0) throw new NodeNotFoundError(name, { cause: err })
        await sleep(Math.min(NODE_POLL_MS, left), signal)
      }
    }
  }

  /**
   * Without `waitForPodCidr`: fails with flanneld's error. With it: logs the
   * reason once and watches the Node until a podCIDR is set.
   */
  private async waitForPodCidr(
    client: KubeClient,
    name: string,
    signal: AbortSignal,
  ): Promise<NodeObject> {
    const missing = new PodCidrMissingError(name)
    if (!this.options.waitForPodCidr) throw missing
    this.logger.warn(
      { node: name },
      `${missing.message}; waiting for it to be assigned (flanneld would exit here)`,
    )
    let failures = 0
    for (;;) {
      const node = await this.waitForNode(client, name, signal)
      if (node.spec?.podCIDR) {
        this.logger.info(
          { node: name, podCIDR: node.spec.podCIDR },
          `node "${name}" pod cidr assigned`,
        )
        return node
      }
      let assigned: NodeObject | undefined
      const stop = new AbortController()
      const both = AbortSignal.any([signal, stop.signal])
      const end = await client.watch(
        {
          verb: 'watch',
          resource: 'nodes',
          name,
          method: 'GET',
          path: '/api/v1/nodes',
          query: {
            fieldSelector: `metadata.name=${name}`,
            resourceVersion: node.metadata?.resourceVersion,
            allowWatchBookmarks: 'true',
            timeoutSeconds: String(WATCH_MIN_SECONDS),
          },
        },
        (event) => {
          const n = event.object as NodeObject
          if (event.type !== 'BOOKMARK' && n?.spec?.podCIDR) {
            assigned = n
            stop.abort()
          }
        },
        both,
        (WATCH_MIN_SECONDS + 60) * 1000,
      )
      throwIfAborted(signal)
      if (assigned !== undefined) {
        this.logger.info(
          { node: name, podCIDR: assigned.spec?.podCIDR },
          `node "${name}" pod cidr assigned`,
        )
        return assigned
      }
      if (end.kind === 'failed') {
        if (isFlannelError(end.error) && !end.error.retryable) throw end.error
        await sleep(Math.min(5_000, 100 * 2 ** failures++), signal)
      } else failures = 0
    }
  }

  /** Lists every Node, 500 per page; retries from the start when a continue token expires. */
  private async listNodes(signal: AbortSignal): Promise<NodeListing> {
    const client = await this.client()
    for (;;) {
      const items: NodeObject[] = []
      let cont: string | undefined
      let rv = ''
      try {
        do {
          const page = await client.call<{
            items?: NodeObject[]
            metadata?: { resourceVersion?: string; continue?: string }
          }>(
            {
              verb: 'list',
              resource: 'nodes',
              method: 'GET',
              path: '/api/v1/nodes',
              query: { limit: '500', continue: cont },
            },
            signal,
          )
          items.push(...(page.items ?? []))
          rv = page.metadata?.resourceVersion ?? rv
          cont = page.metadata?.continue || undefined
        } while (cont !== undefined)
        return { items, resourceVersion: rv }
      } catch (err) {
        if (!(err instanceof GoneError)) throw err
        this.logger.info({}, 'node listing expired mid-way; listing again')
      }
    }
  }

  private async watchNodes(
    rv: string,
    onEvent: (event: NodeWatchEvent) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd> {
    const client = await this.client()
    const seconds = WATCH_MIN_SECONDS + Math.floor(this.options.random() * WATCH_MIN_SECONDS)
    return await client.watch(
      {
        verb: 'watch',
        resource: 'nodes',
        method: 'GET',
        path: '/api/v1/nodes',
        query: {
          resourceVersion: rv,
          allowWatchBookmarks: 'true',
          timeoutSeconds: String(seconds),
        },
      },
      onEvent,
      signal,
      (seconds + 60) * 1000,
    )
  }

  /** The caller's signal combined with the registry's own close signal. */
  private signalFor(signal: AbortSignal | undefined): AbortSignal {
    if (this.closed) throw new FlannelError('REGISTRY_CLOSED', 'the kube registry is closed')
    throwIfAborted(signal)
    if (signal === undefined) return this.closeController.signal
    const combined = AbortSignal.any([signal, this.closeController.signal])
    setMaxListeners(0, combined)
    return combined
  }
}

function isNetworkConfig(value: unknown): value is NetworkConfig {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as NetworkConfig).enableIPv4 === 'boolean' &&
    typeof (value as NetworkConfig).backendType === 'string' &&
    'subnetLen' in value
  )
}

/** Settles with `promise`, or rejects with `AbortError` as soon as `signal` aborts. */
function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(new AbortError(undefined, { cause: signal.reason }))
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(new AbortError(undefined, { cause: signal.reason }))
    signal.addEventListener('abort', onAbort, { once: true })
    promise.then(
      (v) => {
        signal.removeEventListener('abort', onAbort)
        resolve(v)
      },
      (e: unknown) => {
        signal.removeEventListener('abort', onAbort)
        reject(e)
      },
    )
  })
}
