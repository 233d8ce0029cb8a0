import { Observable } from 'rxjs'
import { AbortError, isFlannelError, type Lease, type LeaseEvent, type Logger } from '@flannel/core'
import { diffLeases, sleep } from '@flannel/core/registry'
import type { IWatchResponse, Watcher } from 'etcd3'
import type { KeyLayout } from './keys.js'
import { backoffDelay } from './retry.js'
import type { EtcdStore } from './store.js'

/** Resync backoff after a lost watch (flanneld: 100 ms doubling, capped at 5 s). */
const RESYNC_INITIAL_MS = 100
const RESYNC_MAX_MS = 5_000
/** A watch that lived this long counts as healthy: the next resync starts from the initial delay again. */
const HEALTHY_AFTER_MS = 10_000

/** Settings of {@link watchLeaseEvents}. */
export interface WatchSettings {
  readonly keys: KeyLayout
  readonly logger: Logger
  readonly random: () => number
  /** Aborted when the registry closes: the stream then completes. */
  readonly closed: AbortSignal
}

/**
 * The cold lease stream of spec core.md section 7: on subscribe one batch
 * with every lease as `added` (empty when there are none); then, from the
 * listing's revision + 1, one batch per etcd watch response. A lost watch
 * (compaction, connection loss) is healed by re-listing and emitting only
 * the differences. Unparsable entries are logged and skipped. Unsubscribing
 * cancels the etcd watch and every timer.
 */
export function watchLeaseEvents(
  store: EtcdStore,
  settings: WatchSettings,
): Observable<LeaseEvent[]> {
  return new Observable<LeaseEvent[]>((subscriber) => {
    const controller = new AbortController()
    const onClose = (): void => controller.abort()
    if (settings.closed.aborted) onClose()
    settings.closed.addEventListener('abort', onClose, { once: true })
    const watch = new LeaseWatch(store, settings, controller.signal, (batch) =>
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

type WatchEnd = 'aborted' | 'lost'

class LeaseWatch {
  /** Leases as last delivered to the subscriber, by subnet key. */
  private known = new Map<string, Lease>()
  private readonly logger: Logger

  constructor(
    private readonly store: EtcdStore,
    private readonly settings: WatchSettings,
    private readonly signal: AbortSignal,
    private readonly emit: (batch: LeaseEvent[]) => void,
  ) {
    this.logger = settings.logger.child({ component: 'etcd-lease-watch' })
  }

  async run(): Promise<void> {
    let first = true
    let failures = 0
    while (!this.signal.aborted) {
      let revision: string
      try {
        const listing = await this.store.list(this.signal)
        const next = new Map(listing.leases.map((l) => [l.name, l.lease]))
        // A lease whose value turned unparsable is kept as last seen: garbage never removes a peer.
        for (const name of listing.unparsable) {
          const cached = this.known.get(name)
          if (cached !== undefined) next.set(name, cached)
        }
        const batch: LeaseEvent[] = first
          ? listing.leases.map((l) => ({ type: 'added', lease: l.lease }))
          : diffLeases(this.known, next)
        this.known = next
        revision = listing.revision
        if (this.signal.aborted) return
        if (first || batch.length > 0) this.emit(batch)
        if (!first)
          this.logger.info({ revision, changes: batch.length }, 'lease watch resynchronised')
        first = false
      } catch (err) {
        if (err instanceof AbortError || this.signal.aborted) return
        if (isFlannelError(err) && !err.retryable) throw err
        this.logger.warn({ err: (err as Error).message }, 'listing leases failed; retrying')
        await this.pause(failures++)
        continue
      }
      const started = Date.now()
      const end = await this.follow(BigInt(revision) + 1n)
      if (end === 'aborted' || this.signal.aborted) return
      if (Date.now() - started >= HEALTHY_AFTER_MS) failures = 0
      await this.pause(failures++)
    }
  }

  /** Waits out the resync backoff; resolves early (and quietly) on abort. */
  private async pause(failures: number): Promise<void> {
    const delay = backoffDelay(failures, this.settings.random, RESYNC_INITIAL_MS, RESYNC_MAX_MS)
    await sleep(delay, this.signal).catch(() => undefined)
  }

  /** Follows the etcd watch from `revision` until it is lost or the stream is stopped. */
  private follow(revision: bigint): Promise<WatchEnd> {
    return new Promise<WatchEnd>((resolve) => {
      // `watcher()` hands back the watcher before it is connected, so it can
      // be cancelled even when etcd never answers (`create()` would not).
      const watcher: Watcher = this.store.client
        .watch()
        .prefix(this.settings.keys.subnets)
        .startRevision(revision.toString())
        .watcher()
      let queue = Promise.resolve()
      let ended = false
      const finish = (end: WatchEnd, detail?: unknown): void => {
        if (ended) return
        ended = true
        this.signal.removeEventListener('abort', onAbort)
        watcher.removeAllListeners()
        // Keep one error listener: a late 'error' on an EventEmitter without one would throw.
        watcher.on('error', () => undefined)
        if (end === 'lost') {
          this.logger.warn(
            { err: detail instanceof Error ? detail.message : detail },
            'lease watch lost; re-listing',
          )
        }
        watcher.cancel().catch(() => undefined)
        void queue.then(() => resolve(end))
      }
      const onAbort = (): void => finish('aborted')
      this.signal.addEventListener('abort', onAbort, { once: true })
      watcher.on('data', (res: IWatchResponse) => {
        queue = queue.then(async () => {
          if (ended) return
          try {
            await this.apply(res)
          } catch (err) {
            finish('lost', err)
          }
        })
      })
      watcher.on('disconnected', (err: unknown) => finish('lost', err))
      watcher.on('error', (err: unknown) => finish('lost', err))
      watcher.on('end', () => finish('lost', 'watch ended'))
    })
  }

  /** Turns one watch response into one batch (spec: core.md section 7.2). */
  private async apply(res: IWatchResponse): Promise<void> {
    if (res.events.length === 0) return
    const batch: LeaseEvent[] = []
    for (const event of res.events) {
      const name = this.settings.keys.subnetKeyOf(event.kv.key.toString())
      if (name === undefined) continue
      if (event.type === 'Put') {
        const parsed = await this.store.parse(event.kv, this.signal)
        if (!parsed.ok) {
          this.store.warnSkipped(event.kv, parsed.reason)
          continue
        }
        this.known.set(name, parsed.lease.lease)
        batch.push({ type: 'added', lease: parsed.lease.lease })
      } else if (event.type === 'Delete') {
        this.store.forgetSkipped(event.kv.key.toString(), event.kv.mod_revision)
        const cached = this.known.get(name)
        if (cached === undefined) {
          this.logger.debug({ key: name }, 'deletion of a lease never seen; ignored')
          continue
        }
        this.known.delete(name)
        batch.push({ type: 'removed', lease: cached })
      }
    }
    if (batch.length > 0 && !this.signal.aborted) this.emit(batch)
  }
}
