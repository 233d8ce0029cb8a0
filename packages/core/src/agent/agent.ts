import {
  BehaviorSubject,
  identity,
  Observable,
  Subject,
  Subscription,
  tap,
  type Observer,
  type Subscriber,
  type TeardownLogic,
} from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import {
  AbortError,
  InvalidArgumentError,
  LeaseRevokedError,
  SubnetFileError,
  isFlannelError,
  throwIfAborted,
} from '../errors.js'
import type { Lease, LeaseEvent, PreviousSubnets } from '../lease/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { leaseKey } from '../registry/reconcile.js'
import type { SubnetRegistry } from '../registry/types.js'
import {
  backendsByType,
  lookupBackend,
  type BackendList,
  type BackendTable,
} from '../backend/lookup.js'
import { activateWithLease } from '../backend/lease.js'
import type {
  BackendFactory,
  ExternalInterface,
  Network,
  NetworkEvent,
  PreparedNetwork,
} from '../backend/types.js'
import {
  DEFAULT_SUBNET_FILE,
  readSubnetEnv,
  subnetEnvValues,
  writeSubnetEnv,
  type SubnetEnvValues,
} from '../subnetenv/subnetenv.js'
import { DEFAULT_CONFIG_RETRY_MS, fetchNetworkConfig } from './fetch-config.js'
import { handleLeaseLoss, holdPeerRemovalsWhileOwnLeaseIsGone } from './lease-loss.js'
import { withoutOwnLease } from './own-lease.js'
import { sleep, systemTimers, type AgentTimers } from './timers.js'

/** flanneld's default `--subnet-lease-renew-margin` (60 minutes), in milliseconds. */
export const DEFAULT_RENEW_MARGIN_MS = 60 * 60_000
/**
 * How many times the agent tries to write subnet.env before its start fails
 * (flanneld tries once and keeps running without it).
 */
export const SUBNET_FILE_ATTEMPTS = 3
/** The wait after the first failed subnet.env write; doubled after each further one. */
export const SUBNET_FILE_RETRY_MS = 1_000
/** How long flanneld waits before retrying a failed renewal (1 minute). */
export const DEFAULT_RENEW_RETRY_MS = 60_000

/** Where an {@link Agent} is in its life. */
export type AgentStatus = 'idle' | 'starting' | 'running' | 'stopped' | 'failed'

/**
 * The external interface for a network config: how {@link AgentOptions.extIface}
 * can be given when the choice depends on the config (IPv4 and/or IPv6
 * enabled), e.g. `(config) => selectExternalInterface(host, { iface: ['eth0'],
 * enableIPv4: config.enableIPv4, enableIPv6: config.enableIPv6 })`. Called
 * once per start, after the config is read and before the backend is created.
 */
export type ExternalInterfaceSource = (
  config: NetworkConfig,
  opts: { readonly signal: AbortSignal },
) => ExternalInterface | Promise<ExternalInterface>

/** What {@link Agent.ready} resolves with: this host's lease and the workloads' MTU. */
export interface AgentReady {
  readonly lease: Lease
  readonly mtu: number
}

/** What {@link AgentOptions.prepare} receives, after the network is registered. */
export interface PrepareContext {
  readonly config: NetworkConfig
  readonly network: Network
  readonly signal: AbortSignal
}

/** Options of {@link Agent}. */
export interface AgentOptions {
  /** Where the config and the leases live. */
  readonly registry: SubnetRegistry
  /**
   * The backends this agent can run: factories such as `[vxlan(), hostGw()]`,
   * one per type; the config's `Backend.Type` picks one. Two factories
   * claiming one type are refused. (A table by lower-cased type,
   * `{ vxlan: createBackend }`, is still accepted but deprecated.)
   */
  readonly backends: BackendList | BackendTable
  /**
   * The host's external interface: a value, or a function of the network
   * config giving it (see {@link ExternalInterfaceSource}; `selectExternalInterface`
   * in `@flannel/linux` applies flanneld's rules). A rejection fails the start.
   */
  readonly extIface: ExternalInterface | ExternalInterfaceSource
  /** Use this config instead of reading it from the registry. */
  readonly config?: NetworkConfig | undefined
  /**
   * subnet.env path: read at start for the previous subnets, written once the
   * network is registered. Default `/run/flannel/subnet.env`; `null` neither
   * reads nor writes a file.
   */
  readonly subnetFile?: string | null | undefined
  /** `FLANNEL_IPMASQ` in subnet.env (`--ip-masq`). Default false. */
  readonly ipMasq?: boolean | undefined
  /** Renew this long before the lease expires (`--subnet-lease-renew-margin`). Default 60 min. */
  readonly renewMarginMs?: number | undefined
  /** Wait this long after a failed renewal before the next try. Default 1 min. */
  readonly renewRetryMs?: number | undefined
  /** Wait this long before fetching a missing, invalid or unreachable config again. Default 1 s. */
  readonly configRetryMs?: number | undefined
  /**
   * Runs after the network is registered and before subnet.env is written
   * (the agent command installs the masquerade/forward rules here). It may
   * return an undo function, called only if the start fails afterwards.
   */
  readonly prepare?:
    | ((ctx: PrepareContext) => Promise<(() => Promise<void>) | undefined | void>)
    | undefined
  /** Logger; silent by default. */
  readonly logger?: Logger | undefined
  /** Clock and timers; Node's by default (tests pass a fake clock). */
  readonly timers?: AgentTimers | undefined
}

/** What a running {@link Agent} reports. */
export type AgentEvent =
  /** The backend registered the network (this host's lease is acquired). */
  | {
      readonly type: 'registered'
      readonly config: NetworkConfig
      readonly lease: Lease
      readonly mtu: number
    }
  /** subnet.env is written and the rules are in place: the host is ready. */
  | { readonly type: 'ready'; readonly lease: Lease; readonly mtu: number }
  /** A batch of peer lease events handed to the network; `known` peers after it. */
  | { readonly type: 'peers'; readonly events: readonly LeaseEvent[]; readonly known: number }
  /** Something the network did. */
  | { readonly type: 'network'; readonly event: NetworkEvent }
  /** The own lease was renewed. */
  | { readonly type: 'renewed'; readonly lease: Lease }
  /** A renewal failed; the next try is in `retryInMs`. */
  | { readonly type: 'renew-failed'; readonly error: unknown; readonly retryInMs: number }
  /**
   * The own lease and the network config are gone (the registry was wiped):
   * the data plane stays as it is while the agent waits for the config.
   */
  | { readonly type: 'registry-wiped'; readonly lease: Lease }
  /** After a wipe, the config is back and the agent holds its previous subnet again. */
  | { readonly type: 'reacquired'; readonly lease: Lease }
  /** Reading the network config failed (missing, invalid, registry unreachable); the next try is in `retryInMs`. */
  | { readonly type: 'config-failed'; readonly error: unknown; readonly retryInMs: number }

/**
 * Wires a registry to a backend, as flanneld's main loop does (spec: core.md
 * 6 and 10.3): reads the config, picks the backend by `Backend.Type`,
 * registers the network (asking for the previous subnets from subnet.env),
 * writes subnet.env, feeds the network the peers' lease stream (the own lease
 * filtered out), renews the lease `renewMarginMs` before it expires (retrying
 * every `renewRetryMs` on failure) and fails with {@link LeaseRevokedError}
 * when the own lease is deleted while the config remains. When the config is
 * gone too (a wipe), it keeps the data plane, waits for the config and takes
 * the same subnet back ({@link handleLeaseLoss}). A registry that never
 * revokes leases (`revokesLeases: false`, as in kube mode) is not watched for
 * the own lease at all.
 *
 * Three ways to follow it: the Observable of {@link Agent.run}, the async
 * iterator of {@link Agent.events}, and {@link Agent.ready} (a Promise for
 * the lease and MTU). A failure never crashes a process that subscribed
 * without an error callback: it is logged, kept in {@link Agent.error} and
 * rejects `ready()`.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, backends: [vxlan(), hostGw()], extIface })
 * const sub = agent.run().subscribe((e) => console.log(e.type))
 * const { lease, mtu } = await agent.ready() // rejects with the start-up error
 * // later: sub.unsubscribe() stops everything (the lease and data plane are kept)
 * ```
 */
export class Agent {
  private readonly options: AgentOptions
  private readonly logger: Logger
  private readonly timers: AgentTimers
  private readonly renewMarginMs: number
  private readonly renewRetryMs: number
  private readonly configRetryMs: number
  private readonly backends: ReadonlyMap<string, BackendFactory>
  private readonly statusSubject = new BehaviorSubject<AgentStatus>('idle')
  private currentLease: Lease | undefined
  private lastError: unknown
  private readyValue: AgentReady | undefined
  /** Each run's outcome before it is ready: ready, failed, or stopped. */
  private readonly outcomes = new Subject<
    { readonly ready: AgentReady } | { readonly error: unknown }
  >()

  /** The status, starting with the current one. */
  readonly status$: Observable<AgentStatus> = this.statusSubject.asObservable()

  constructor(options: AgentOptions) {
    this.options = options
    this.logger = options.logger ?? silentLogger
    this.timers = options.timers ?? systemTimers
    this.backends = backendsByType(options.backends)
    this.renewMarginMs = positive('renewMarginMs', options.renewMarginMs, DEFAULT_RENEW_MARGIN_MS)
    this.renewRetryMs = positive('renewRetryMs', options.renewRetryMs, DEFAULT_RENEW_RETRY_MS)
    this.configRetryMs = positive('configRetryMs', options.configRetryMs, DEFAULT_CONFIG_RETRY_MS)
  }

  /** The current status. */
  get status(): AgentStatus {
    return this.statusSubject.value
  }

  /** This host's lease (latest renewal), once registered. */
  get lease(): Lease | undefined {
    return this.currentLease
  }

  /** Why the latest run failed (status `failed`); undefined while none has. */
  get error(): unknown {
    return this.lastError
  }

  /**
   * Resolves with the lease and MTU once the agent is ready (subnet.env
   * written): at once while a run is ready, else when the current (or, when
   * idle or stopped, the next) run gets there. Does not start the agent;
   * subscribe to {@link Agent.run} or iterate {@link Agent.events} for that.
   *
   * @throws the start-up error when that run fails before it is ready, or
   *   the failure of the latest run when the status is `failed`.
   * @throws AbortError when the run is stopped before it is ready, or `opts.signal` aborts.
   *
   * @example
   * ```ts
   * agent.run({ signal }).subscribe()
   * const { lease, mtu } = await agent.ready()
   * ```
   */
  ready(opts: { readonly signal?: AbortSignal | undefined } = {}): Promise<AgentReady> {
    const { signal } = opts
    if (this.status === 'running' && this.readyValue !== undefined) {
      return Promise.resolve(this.readyValue)
    }
    if (this.status === 'failed') return Promise.reject(this.lastError)
    return new Promise<AgentReady>((resolve, reject) => {
      const onAbort = (): void => {
        sub.unsubscribe()
        reject(
          new AbortError('waiting for the agent to be ready was aborted', {
            cause: signal?.reason,
          }),
        )
      }
      const sub = this.outcomes.subscribe((outcome) => {
        sub.unsubscribe()
        signal?.removeEventListener('abort', onAbort)
        if ('ready' in outcome) resolve(outcome.ready)
        else reject(outcome.error)
      })
      if (signal?.aborted) onAbort()
      else signal?.addEventListener('abort', onAbort, { once: true })
    })
  }

  /**
   * {@link Agent.run} as an async iterator: starts the agent, yields its
   * events, throws its failure, and ends when `opts.signal` aborts. Leaving
   * the loop (`break`, `return`, a throw in its body) stops the agent as an
   * unsubscribe does. Events are buffered without bound until the loop takes
   * them (an agent emits a few per lease change).
   *
   * @example
   * ```ts
   * for await (const e of agent.events({ signal })) if (e.type === 'ready') console.log(e.lease.subnet)
   * ```
   */
  async *events(
    opts: { readonly signal?: AbortSignal | undefined } = {},
  ): AsyncGenerator<AgentEvent, void, undefined> {
    const buffer: AgentEvent[] = []
    let end: { readonly error?: unknown; readonly failed: boolean } | undefined
    let wake: (() => void) | undefined
    const notify = (): void => {
      wake?.()
      wake = undefined
    }
    const sub = this.run(opts).subscribe({
      next: (event) => {
        buffer.push(event)
        notify()
      },
      error: (error: unknown) => {
        end = { error, failed: true }
        notify()
      },
      complete: () => {
        end = { failed: false }
        notify()
      },
    })
    try {
      for (;;) {
        const event = buffer.shift()
        if (event !== undefined) {
          yield event
          continue
        }
        if (end !== undefined) {
          if (end.failed) throw end.error
          return
        }
        await new Promise<void>((resolve) => (wake = resolve))
      }
    } finally {
      sub.unsubscribe()
    }
  }

  /**
   * Starts the agent on subscribe. The stream errors with the start-up
   * failure (after undoing what this start did: the lease is released), or
   * with {@link LeaseRevokedError} / a network failure later. Unsubscribing,
   * or aborting `signal` (which completes the stream), stops renewal, the
   * watches and the network's run; the lease and the data plane are kept, as
   * flanneld keeps them on SIGTERM.
   */
  run(opts: { readonly signal?: AbortSignal | undefined } = {}): Observable<AgentEvent> {
    const onUnhandled = (error: unknown): void =>
      this.logger.error(
        { err: error },
        `agent failed (no error callback subscribed): ${String(error)}`,
      )
    return new SafeErrorObservable<AgentEvent>(onUnhandled, (subscriber) => {
      const stop = new AbortController()
      const subs = new Subscription()
      let renewTimer: unknown
      let renewing = false
      let recovering = false
      let failed = false
      /** The config the running network was made from (set once started). */
      let config: NetworkConfig | undefined
      let wasReady = false

      const emit = (event: AgentEvent): void => {
        if (!subscriber.closed) subscriber.next(event)
      }
      const fail = (error: unknown): void => {
        if (stop.signal.aborted) return
        failed = true
        this.lastError = error
        this.readyValue = undefined
        this.statusSubject.next('failed')
        if (!wasReady) this.outcomes.next({ error })
        subscriber.error(error)
      }
      const onOuterAbort = (): void => subscriber.complete()
      if (opts.signal?.aborted) {
        subscriber.complete()
        return
      }
      opts.signal?.addEventListener('abort', onOuterAbort, { once: true })

      const scheduleRenew = (delayMs?: number): void => {
        if (stop.signal.aborted || this.currentLease === undefined) return
        this.timers.clearTimeout(renewTimer)
        const wait =
          delayMs ??
          Math.max(
            0,
            this.currentLease.expiration.getTime() - this.renewMarginMs - this.timers.now(),
          )
        renewTimer = this.timers.setTimeout(() => void renew(), wait)
      }
      const renew = async (): Promise<void> => {
        renewTimer = undefined
        const lease = this.currentLease
        if (lease === undefined || stop.signal.aborted) return
        renewing = true
        try {
          const renewed = await this.options.registry.renewLease(lease, { signal: stop.signal })
          renewing = false
          if (stop.signal.aborted) return
          this.currentLease = renewed
          this.logger.info(
            { subnet: renewed.subnet.toString(), expiration: renewed.expiration.toISOString() },
            'Lease renewed',
          )
          emit({ type: 'renewed', lease: renewed })
          scheduleRenew()
        } catch (error) {
          renewing = false
          if (stop.signal.aborted) return
          if (isFlannelError(error, 'LEASE_NOT_FOUND')) {
            onLeaseLost(error)
            return
          }
          this.logger.error({ err: error }, 'Error renewing lease (trying again in 1 min)')
          emit({ type: 'renew-failed', error, retryInMs: this.renewRetryMs })
          scheduleRenew(this.renewRetryMs)
        }
      }

      /** The own lease disappeared: revoked (config still there) or wiped (see handleLeaseLoss). */
      const onLeaseLost = (cause?: unknown): void => {
        const lease = this.currentLease
        if (recovering || stop.signal.aborted || lease === undefined || config === undefined) return
        recovering = true
        this.timers.clearTimeout(renewTimer)
        renewTimer = undefined
        handleLeaseLoss({
          registry: this.options.registry,
          lease,
          config,
          signal: stop.signal,
          retryMs: this.configRetryMs,
          logger: this.logger,
          timers: this.timers,
          onWiped: () => emit({ type: 'registry-wiped', lease }),
        }).then((outcome) => {
          if (stop.signal.aborted) return
          if (outcome.type === 'revoked') {
            this.logger.warn({}, 'Lease has been revoked. Shutting down daemon.')
            fail(new LeaseRevokedError(undefined, cause === undefined ? {} : { cause }))
            return
          }
          recovering = false
          this.currentLease = outcome.lease
          emit({ type: 'reacquired', lease: outcome.lease })
          scheduleRenew()
        }, fail)
      }

      /**
       * One watch per run feeds both the own-lease monitor and the peers'
       * stream the network runs on (filtered once, by withoutOwnLease).
       */
      const watchLeases = (network: Network, config: NetworkConfig): void => {
        const own = network.lease
        // The own lease is the one with exactly its key: a lease that merely
        // overlaps it (a hostile `10.5.1.0-24&fd00::-64` beside our
        // `10.5.1.0-24`) must neither be renewed in its place nor, when it is
        // deleted, count as the revocation of ours.
        const ownKey = leaseKey(own)
        const known = new Map<string, Lease>()
        let seenFirst = false
        const peerSubscribers = new Set<Subscriber<LeaseEvent[]>>()
        // flanneld's kube mode has no lease to lose (main.go: no MonitorLease):
        // with a registry that never revokes, the own lease is not followed,
        // and the registry is watched only once the network asks for peers
        // (alloc never does: it needs no list or watch permission).
        const revokes = this.options.registry.revokesLeases !== false
        let watching = false
        // A network subscribing late (or again) starts from the peers known so far.
        const peers$ = new Observable<LeaseEvent[]>((sub) => {
          if (seenFirst) sub.next([...known.values()].map((lease) => ({ type: 'added', lease })))
          peerSubscribers.add(sub)
          if (!watching) startWatch()
          return () => peerSubscribers.delete(sub)
        })
        const monitorOwnLease = (batch: LeaseEvent[]): void => {
          if (!revokes) return
          for (const event of batch) {
            if (leaseKey(event.lease) !== ownKey) continue
            if (event.type === 'removed') {
              onLeaseLost()
              return
            }
            this.currentLease = event.lease
            if (!renewing && !recovering) scheduleRenew()
          }
        }
        const startWatch = (): void => {
          watching = true
          subs.add(watch$.subscribe(watchObserver))
        }
        const watch$ = this.options.registry.watchLeases().pipe(
          tap(monitorOwnLease),
          // Peers' removals that come with the own lease's, and after it until
          // it is back, are held (a wipe must not empty the data plane); a
          // registry that never revokes (kube mode: a deleted own Node changes
          // nothing) passes every removal, as flanneld.
          revokes ? holdPeerRemovalsWhileOwnLeaseIsGone(own) : identity,
          withoutOwnLease(own, {
            config,
            onIgnored: (lease, reason) =>
              this.logger.warn({ subnet: lease.subnet.toString() }, `ignoring lease: ${reason}`),
          }),
        )
        const watchObserver: Partial<Observer<LeaseEvent[]>> = {
          next: (batch) => {
            if (stop.signal.aborted) return
            for (const e of batch) {
              const key = leaseKey(e.lease)
              if (e.type === 'added') known.set(key, e.lease)
              else known.delete(key)
            }
            seenFirst = true
            emit({ type: 'peers', events: batch, known: known.size })
            for (const sub of [...peerSubscribers]) sub.next(batch)
          },
          error: fail,
        }
        subs.add(
          network.run(peers$).subscribe({
            next: (event) => emit({ type: 'network', event }),
            error: fail,
          }),
        )
        if (revokes && !watching) startWatch()
      }

      this.lastError = undefined
      this.readyValue = undefined
      this.statusSubject.next('starting')
      this.start(stop.signal, emit)
        .then((started) => {
          if (stop.signal.aborted) return
          const { network } = started
          config = started.config
          wasReady = true
          this.readyValue = { lease: network.lease, mtu: network.mtu }
          this.statusSubject.next('running')
          this.outcomes.next({ ready: this.readyValue })
          emit({ type: 'ready', lease: network.lease, mtu: network.mtu })
          watchLeases(network, started.config)
          // No renewal in kube mode either (flanneld does not implement RenewLease there).
          if (this.options.registry.revokesLeases !== false) scheduleRenew()
        })
        .catch(fail)

      return () => {
        stop.abort(new Error('agent stopped'))
        opts.signal?.removeEventListener('abort', onOuterAbort)
        this.timers.clearTimeout(renewTimer)
        subs.unsubscribe()
        if (failed) return
        this.readyValue = undefined
        this.statusSubject.next('stopped')
        if (!wasReady)
          this.outcomes.next({ error: new AbortError('the agent stopped before it was ready') })
      }
    })
  }

  /** Steps 2-9 of flanneld's start-up; on failure undoes what it did. */
  private async start(
    signal: AbortSignal,
    emit: (event: AgentEvent) => void,
  ): Promise<{ network: Network; config: NetworkConfig }> {
    const { registry, subnetFile = DEFAULT_SUBNET_FILE } = this.options
    const previous = subnetFile === null ? {} : await this.readPrevious(subnetFile)
    const config = this.options.config ?? (await this.fetchConfig(signal, emit))
    const given = this.options.extIface
    const extIface = typeof given === 'function' ? await given(config, { signal }) : given
    throwIfAborted(signal)
    const factory = lookupBackend(config.backendType, this.backends)
    const backend = await factory.create({ registry, extIface, logger: this.logger })
    throwIfAborted(signal)
    let prepared: PreparedNetwork | undefined
    let network: Network
    if (backend.prepare !== undefined) {
      // The one lease owner: the backend prepares, the Agent acquires, the backend activates.
      // What this host published before (kube mode: its Node's annotations),
      // read through the Agent so that no backend calls the registry.
      const storedAttrs = async () => registry.storedAttrs?.({ signal })
      prepared = await backend.prepare(config, { signal, storedAttrs })
      network = await activateWithLease(registry, prepared, { signal, previous })
    } else if (backend.registerNetwork !== undefined) {
      network = await backend.registerNetwork(config, { signal, previous })
    } else {
      throw new InvalidArgumentError(
        'backend',
        backend.type,
        'a backend implements prepare (or the deprecated registerNetwork)',
      )
    }
    let undo: (() => Promise<void>) | undefined
    try {
      throwIfAborted(signal)
      this.currentLease = network.lease
      this.logger.info(
        { subnet: network.lease.subnet.toString(), mtu: network.mtu, backend: backend.type },
        'network registered',
      )
      emit({ type: 'registered', config, lease: network.lease, mtu: network.mtu })
      undo = (await this.options.prepare?.({ config, network, signal })) ?? undefined
      throwIfAborted(signal)
      if (subnetFile !== null) {
        const values = subnetEnvValues(
          config,
          network.lease,
          network.mtu,
          this.options.ipMasq ?? false,
        )
        await this.writeSubnetFile(subnetFile, values, signal)
        this.logger.info({ path: subnetFile }, `Wrote subnet file to ${subnetFile}`)
      }
      return { network, config }
    } catch (error) {
      await undo?.().catch((e: unknown) => this.logger.warn({ err: e }, 'undoing prepare failed'))
      await prepared
        ?.abort()
        .catch((e: unknown) => this.logger.warn({ err: e }, 'undoing the backend failed'))
      await registry
        .releaseLease(network.lease)
        .catch((e: unknown) => this.logger.warn({ err: e }, 'releasing the lease failed'))
      this.currentLease = undefined
      throw error
    }
  }

  private async readPrevious(path: string): Promise<PreviousSubnets> {
    try {
      const { subnet, ipv6Subnet } = await readSubnetEnv(path)
      return { subnet, ipv6Subnet }
    } catch (error) {
      this.logger.warn({ err: error, path }, 'could not read the previous subnet file')
      return {}
    }
  }

  /**
   * Writes subnet.env, trying {@link SUBNET_FILE_ATTEMPTS} times in all (1 s,
   * then 2 s apart), each failure logged with the path and the reason.
   *
   * @throws SubnetFileError naming the path and the last reason.
   */
  private async writeSubnetFile(
    path: string,
    values: SubnetEnvValues,
    signal: AbortSignal,
  ): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      try {
        await writeSubnetEnv(path, values, { signal })
        return
      } catch (error) {
        throwIfAborted(signal)
        const reason = error instanceof Error ? error.message : String(error)
        if (attempt >= SUBNET_FILE_ATTEMPTS)
          throw new SubnetFileError(path, reason, { cause: error })
        const waitMs = SUBNET_FILE_RETRY_MS * 2 ** (attempt - 1)
        this.logger.warn(
          { err: error, path, attempt, retryInMs: waitMs },
          `Failed to write subnet file ${path}: ${reason} (attempt ${attempt} of ${SUBNET_FILE_ATTEMPTS})`,
        )
        await sleep(this.timers, waitMs, signal).catch(() => throwIfAborted(signal))
      }
    }
  }

  /** Fetches the config, retrying while it is missing, invalid or the registry unreachable. */
  private fetchConfig(
    signal: AbortSignal,
    emit: (event: AgentEvent) => void,
  ): Promise<NetworkConfig> {
    return fetchNetworkConfig(this.options.registry, {
      signal,
      retryMs: this.configRetryMs,
      logger: this.logger,
      timers: this.timers,
      onRetry: (error) => emit({ type: 'config-failed', error, retryInMs: this.configRetryMs }),
    })
  }
}

/**
 * An Observable whose direct subscribers without an error callback do not
 * crash the process on its error (rxjs would rethrow it asynchronously):
 * such an error goes to `onUnhandled` instead. Subscribers with an error
 * callback, operators and `firstValueFrom`/`lastValueFrom` see it as usual.
 */
class SafeErrorObservable<T> extends Observable<T> {
  constructor(
    private readonly onUnhandled: (error: unknown) => void,
    subscribe: (subscriber: Subscriber<T>) => TeardownLogic,
  ) {
    super(subscribe)
  }

  override subscribe(
    observerOrNext?: Partial<Observer<T>> | ((value: T) => void) | null,
    error?: ((error: unknown) => void) | null,
    complete?: (() => void) | null,
  ): Subscription {
    if (typeof observerOrNext === 'function' || observerOrNext == null) {
      return super.subscribe({
        ...(observerOrNext ? { next: observerOrNext } : {}),
        error: error ?? this.onUnhandled,
        ...(complete ? { complete } : {}),
      })
    }
    if (typeof observerOrNext.error === 'function') return super.subscribe(observerOrNext)
    const observer = observerOrNext
    return super.subscribe({
      next: (value) => observer.next?.(value),
      error: this.onUnhandled,
      complete: () => observer.complete?.(),
    })
  }
}

function positive(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (!Number.isFinite(value) || value <= 0) {
    throw new InvalidArgumentError(field, value, 'must be a positive number of milliseconds')
  }
  return value
}
