import { Observable } from 'rxjs'
import {
  AbortError,
  type Lease,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
} from '@flannel/core'
import { backoffDelay, diffLeases, leaseKey, sleep } from '@flannel/core/registry'
import type { AnnotationKeys } from './annotations.js'
import type { WatchEnd } from './client.js'
import { nodeToLease, type NodeObject } from './node.js'

/** Backoff of re-lists after a lost watch (as etcd's watch: 100 ms doubling, capped at 5 s). */
const RESYNC_INITIAL_MS = 100
const RESYNC_MAX_MS = 5_000
/** A watch that lived this long counts as healthy: the next failure starts from the initial delay again. */
const HEALTHY_AFTER_MS = 10_000

/** A listing of all Nodes. */
export interface NodeListing {
  readonly items: readonly NodeObject[]
  readonly resourceVersion: string
}

/** A watch event on Nodes. */
export interface NodeWatchEvent {
  readonly type: string
  readonly object: unknown
}

/** What the lease watch needs from the registry. */
export interface NodeSource {
  /** The network config (for the families to read). */
  config(signal: AbortSignal): Promise<NetworkConfig>
  /** Lists every Node (retrying transient faults inside until `signal` aborts). */
  list(signal: AbortSignal): Promise<NodeListing>
  /** Watches Nodes from `resourceVersion` until the stream ends. */
  watch(
    resourceVersion: string,
    onEvent: (event: NodeWatchEvent) => void,
    signal: AbortSignal,
  ): Promise<WatchEnd>
}

/** Settings of {@link watchNodeLeases}. */
export interface WatchSettings {
  readonly keys: AnnotationKeys
  readonly logger: Logger
  readonly random: () => number
  /** Aborted when the registry closes: the stream then completes. */
  readonly closed: AbortSignal
}

/**
 * The lease stream of a kube registry: on subscribe one batch with the lease
 * of every flannel Node (marker `kube-subnet-manager: "true"`, data that
 * `nodeToLease` accepts) as `added`, then one batch per Node change that
 * changes a lease. A dropped connection or a 410 Gone is healed by re-listing
 * and emitting only the difference; a watch the server ends normally is
 * resumed from its last resourceVersion. Unsubscribing aborts the request
 * and every timer.
 */
export function watchNodeLeases(
  source: NodeSource,
  settings: WatchSettings,
): Observable<LeaseEvent[]> {
  return new Observable<LeaseEvent[]>((subscriber) => {
    const controller = new AbortController()
    const onClose = (): void => controller.abort()
    if (settings.closed.aborted) onClose()
    settings.closed.addEventListener('abort', onClose, { once: true })
    const watch = new NodeLeaseWatch(source, settings, controller.signal, (batch) =>
      subscriber.next(batch),
    )
    watch.run().then(
      () => subscriber.complete(),
      (err: unknown) => {
        if (settings.closed.aborted) subscriber.complete()
        else if (!controller.signal.aborted) subscriber.error(err)
      },
    )
    return () => {
      settings.closed.removeEventListener('abort', onClose)
      controller.abort()
    }
  })
}

/** The key of a lease in the view: node name and subnet key, so a changed podCIDR is a removal plus an addition. */
const viewKey = (node: string, lease: Lease): string => `${node}|${leaseKey(lease)}`

class NodeLeaseWatch {
  /** Leases as last delivered to the subscriber, by {@link viewKey}. */
  private known = new Map<string, Lease>()
  /** The view key of each node's lease. */
  private byNode = new Map<string, string>()
  /** Last reason logged per node that is marked but not turned into a lease. */
  private skipped = new Map<string, string>()
  private readonly logger: Logger
  private config: NetworkConfig | undefined

  constructor(
    private readonly source: NodeSource,
    private readonly settings: WatchSettings,
    private readonly signal: AbortSignal,
    private readonly emit: (batch: LeaseEvent[]) => void,
  ) {
    this.logger = settings.logger.child({ component: 'kube-lease-watch' })
  }

  async run(): Promise<void> {
    try {
      this.config = await this.source.config(this.signal)
    } catch (err) {
      if (err instanceof AbortError || this.signal.aborted) return
      throw err
    }
    let first = true
    let failures = 0
    while (!this.signal.aborted) {
      let rv: string
      try {
        rv = await this.relist(first)
        first = false
      } catch (err) {
        if (err instanceof AbortError || this.signal.aborted) return
        // A refusal of the first listing (RBAC, bad request) is the caller's
        // to see; later ones may be fixed meanwhile, so they are retried.
        if (first) throw err
        this.logger.error({ err: (err as Error).message }, 'listing nodes failed; retrying')
        await this.pause(failures++)
        continue
      }
      // Follow the watch, resuming after normal ends, until it is lost.
      for (;;) {
        const started = Date.now()
        const end = await this.source.watch(rv, (e) => (rv = this.apply(e) ?? rv), this.signal)
        if (end.kind === 'aborted' || this.signal.aborted) return
        if (end.kind === 'closed') {
          failures = 0
          continue
        }
        if (Date.now() - started >= HEALTHY_AFTER_MS) failures = 0
        if (end.kind === 'gone') {
          this.logger.info(
            { resourceVersion: rv },
            `node watch expired (${end.message}); re-listing`,
          )
        } else {
          const err = end.error
          this.logger.warn(
            { err: err instanceof Error ? err.message : String(err) },
            'node watch lost; re-listing',
          )
          await this.pause(failures++)
        }
        break
      }
    }
  }

  /** Lists the nodes, emits the snapshot (first) or the difference; returns the listing's resourceVersion. */
  private async relist(first: boolean): Promise<string> {
    const listing = await this.source.list(this.signal)
    const next = new Map<string, Lease>()
    const byNode = new Map<string, string>()
    for (const node of listing.items) {
      const name = node.metadata?.name
      if (name === undefined) continue
      const lease = this.leaseOf(node)
      if (lease === undefined) continue
      const key = viewKey(name, lease)
      next.set(key, lease)
      byNode.set(name, key)
    }
    const batch: LeaseEvent[] = first
      ? [...next.values()].map((lease) => ({ type: 'added', lease }))
      : diffLeases(this.known, next)
    this.known = next
    this.byNode = byNode
    if (this.signal.aborted) return listing.resourceVersion
    if (first || batch.length > 0) this.emit(batch)
    if (!first) {
      this.logger.info(
        { resourceVersion: listing.resourceVersion, changes: batch.length },
        'node watch resynchronised',
      )
    }
    return listing.resourceVersion
  }

  /** Applies one watch event; returns the resourceVersion it carries. */
  private apply(event: NodeWatchEvent): string | undefined {
    const node = event.object as NodeObject | undefined
    const rv = node?.metadata?.resourceVersion
    if (event.type === 'BOOKMARK') return rv
    const name = node?.metadata?.name
    if (name === undefined) return rv
    const prevKey = this.byNode.get(name)
    const before = new Map<string, Lease>()
    if (prevKey !== undefined) before.set(prevKey, this.known.get(prevKey)!)
    const after = new Map<string, Lease>()
    const lease = event.type === 'DELETED' ? undefined : this.leaseOf(node!)
    if (lease !== undefined) after.set(viewKey(name, lease), lease)
    if (event.type === 'DELETED') this.skipped.delete(name)
    const batch = diffLeases(before, after)
    if (prevKey !== undefined) this.known.delete(prevKey)
    this.byNode.delete(name)
    for (const [key, l] of after) {
      this.known.set(key, l)
      this.byNode.set(name, key)
    }
    if (batch.length > 0 && !this.signal.aborted) this.emit(batch)
    return rv
  }

  private leaseOf(node: NodeObject): Lease | undefined {
    const result = nodeToLease(node, this.settings.keys, this.config!)
    const name = node.metadata?.name ?? ''
    if (result.ok) {
      this.skipped.delete(name)
      return result.lease
    }
    const marked = node.metadata?.annotations?.[this.settings.keys.subnetKubeManaged] === 'true'
    if (marked && this.skipped.get(name) !== result.reason) {
      this.skipped.set(name, result.reason)
      this.logger.info({ node: name }, `Error turning node "${name}" to lease: ${result.reason}`)
    }
    return undefined
  }

  /** Waits out the resync backoff; resolves early (and quietly) on abort. */
  private async pause(failures: number): Promise<void> {
    const delay = backoffDelay(failures, this.settings.random, RESYNC_INITIAL_MS, RESYNC_MAX_MS)
    await sleep(delay, this.signal).catch(() => undefined)
  }
}
