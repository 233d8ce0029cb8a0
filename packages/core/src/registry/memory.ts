import { Observable, type Subscriber } from 'rxjs'
import { parseNetworkConfig } from '../config/parse.js'
import type { NetworkConfig } from '../config/types.js'
import {
  FlannelError,
  InvalidArgumentError,
  LeaseConflictError,
  LeaseNotFoundError,
  throwIfAborted,
} from '../errors.js'
import type { Ip4Net } from '../ip/ip4.js'
import type { Ip6Net } from '../ip/ip6.js'
import { encodeLeaseAttrs } from '../lease/codec.js'
import { requireCanonicalSubnets, subnetKey } from '../lease/key.js'
import type { Lease, LeaseAttrs, LeaseEvent } from '../lease/types.js'
import { silentLogger, type Logger } from '../logger.js'
import { acquireFromStore, type LeaseStore } from './acquire.js'
import { leaseKey } from './reconcile.js'
import type { AcquireOptions, CallOptions, SubnetRegistry } from './types.js'

/** flanneld's lease TTL: 24 hours (spec: core.md section 4.2). */
export const DEFAULT_LEASE_TTL_MS = 24 * 60 * 60 * 1000

/** The expiration shown for a reservation (a lease that never expires): the latest representable Date. */
export const NEVER_EXPIRES = new Date(8.64e15)

// Node's timers take at most a signed 32-bit delay.
const MAX_TIMER_MS = 2 ** 31 - 1

/** Options of {@link MemoryRegistry}. */
export interface MemoryRegistryOptions {
  /** Current time in ms since the epoch (default `Date.now`); inject a fake clock in tests. */
  readonly clock?: () => number
  /** Lifetime of a lease from acquisition or renewal (default 24 h). */
  readonly ttlMs?: number
  /** A number in [0, 1) for the allocator's random pick (default `Math.random`). */
  readonly random?: () => number
  /** Where to log (default silent). */
  readonly logger?: Logger
}

interface Entry {
  readonly lease: Lease
  /** When the lease expires, in clock ms; undefined for a reservation. */
  readonly expiresAt: number | undefined
}

/**
 * A `SubnetRegistry` held in this process: the embedded default for a single
 * host, demos and tests. Allocation is flanneld's (spec: core.md section 5,
 * through the shared {@link chooseSubnet}); leases expire after `ttlMs` by
 * the injected clock; `watchLeases` follows section 7.
 *
 * Expiry is checked at the start of every call, by {@link MemoryRegistry.checkExpiry},
 * and, while someone watches, by an unref'd timer. With a fake clock, move
 * the clock and call `checkExpiry()`.
 *
 * @example
 * ```ts
 * const registry = new MemoryRegistry('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
 * const lease = await registry.acquireLease({ publicIP: '192.0.2.10' })
 * lease.subnet.toString() // e.g. '10.5.37.0/24'
 * await registry.close()
 * ```
 */
export class MemoryRegistry implements SubnetRegistry {
  private config: NetworkConfig
  private readonly clock: () => number
  private readonly ttlMs: number
  private readonly random: () => number
  private readonly logger: Logger
  private readonly entries = new Map<string, Entry>()
  private readonly watchers = new Set<Subscriber<LeaseEvent[]>>()
  private timer: ReturnType<typeof setTimeout> | undefined
  private closed = false

  /**
   * @param config the network config JSON (text or object), parsed with `parseNetworkConfig`.
   * @throws ConfigError when the config is invalid (flanneld's message).
   * @throws InvalidArgumentError when `ttlMs` is not a positive number.
   */
  constructor(config: string | object, options: MemoryRegistryOptions = {}) {
    const ttlMs = options.ttlMs ?? DEFAULT_LEASE_TTL_MS
    if (!Number.isFinite(ttlMs) || ttlMs <= 0) {
      throw new InvalidArgumentError('ttlMs', ttlMs, 'must be a positive number of milliseconds')
    }
    this.config = parseNetworkConfig(config)
    this.clock = options.clock ?? Date.now
    this.ttlMs = ttlMs
    this.random = options.random ?? Math.random
    this.logger = (options.logger ?? silentLogger).child({ component: 'memory-registry' })
  }

  /** Returns the network config given to the constructor (validated, defaults applied). */
  getNetworkConfig(opts: CallOptions = {}): Promise<NetworkConfig> {
    return this.call(opts, () => this.config)
  }

  /**
   * Replaces the network config (as an operator rewriting etcd's config key
   * would). Existing leases stay; later acquisitions follow the new config,
   * and a host whose lease no longer fits gets a new one.
   *
   * @throws ConfigError when the config is invalid; the old one then stays.
   */
  setNetworkConfig(config: string | object): void {
    this.config = parseNetworkConfig(config)
  }

  /**
   * Acquires a lease as flanneld does (spec: core.md section 5). A reused
   * lease takes the new attrs and a fresh TTL (a reservation stays one).
   *
   * @throws SubnetExhaustedError (`out of subnets`) when nothing is free.
   * @throws InvalidArgumentError when `attrs.publicIP` is not an IPv4 address.
   * @throws AbortError when `opts.signal` is aborted.
   */
  async acquireLease(attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    await this.call(opts, () => encodeLeaseAttrs(attrs)) // validates the addresses
    const { lease, source } = await acquireFromStore(this.store, {
      config: this.config,
      attrs,
      previous: opts.previous,
      random: this.random,
      signal: opts.signal,
      // Races here are between calls of this process; retrying is cheap.
      attempts: 100,
    })
    this.logger.info({ subnet: lease.subnet.toString(), source }, 'lease acquired')
    return lease
  }

  /** The store operations {@link acquireFromStore} runs on; each one is atomic here. */
  private readonly store: LeaseStore = {
    list: (signal) => this.call({ signal }, () => [...this.entries.values()].map((e) => e.lease)),
    create: (subnet, ipv6Subnet, attrs, signal) =>
      this.call({ signal }, () => {
        const key = subnetKey(subnet, ipv6Subnet)
        return this.entries.has(key) ? undefined : this.write(subnet, ipv6Subnet, attrs, false)
      }),
    update: (lease, attrs, signal) =>
      this.call({ signal }, () => {
        // A reservation stays one when its host takes it.
        const reserved = this.entries.get(leaseKey(lease))?.expiresAt === undefined
        return this.write(lease.subnet, lease.ipv6Subnet, attrs, reserved)
      }),
    remove: (lease, signal) => this.call({ signal }, () => this.delete(leaseKey(lease))),
  }

  /**
   * Extends the lease by the TTL from now, keeping `lease.attrs`.
   *
   * @throws LeaseNotFoundError when the lease no longer exists (it is not re-created).
   * @throws InvalidArgumentError when a subnet of `lease` has host bits set (never a lease).
   */
  renewLease(lease: Lease, opts: CallOptions = {}): Promise<Lease> {
    return this.call(opts, () => {
      requireCanonicalSubnets(lease)
      const key = leaseKey(lease)
      const entry = this.entries.get(key)
      if (entry === undefined) throw new LeaseNotFoundError(`lease ${key} not found`)
      return this.write(lease.subnet, lease.ipv6Subnet, lease.attrs, entry.expiresAt === undefined)
    })
  }

  /**
   * Deletes the lease; watchers see it `removed` with its attributes. A missing lease is fine.
   *
   * @throws InvalidArgumentError when a subnet of `lease` has host bits set (never a lease).
   */
  releaseLease(lease: Lease, opts: CallOptions = {}): Promise<void> {
    return this.call(opts, () => {
      requireCanonicalSubnets(lease)
      this.delete(leaseKey(lease))
    })
  }

  /**
   * Adds a reservation: a lease that never expires, reused by the host whose
   * PublicIP matches `attrs.publicIP` (flannel's reservations).
   *
   * @throws LeaseConflictError when a lease for this subnet exists.
   * @throws InvalidArgumentError when `attrs.publicIP` is not an IPv4 address, or a
   *   subnet has host bits set (`10.5.42.7/24` is not a lease; see `parseLeaseKey`).
   */
  reserve(subnet: Ip4Net, attrs: LeaseAttrs, ipv6Subnet?: Ip6Net): Promise<Lease> {
    return this.call({}, () => {
      requireCanonicalSubnets({ subnet, ipv6Subnet }, 'reservation')
      encodeLeaseAttrs(attrs)
      const key = leaseKey({ subnet, ipv6Subnet, attrs, expiration: NEVER_EXPIRES })
      if (this.entries.has(key)) throw new LeaseConflictError(`subnet ${key} already exists`)
      return this.write(subnet, ipv6Subnet, attrs, true)
    })
  }

  /** Every current lease (expired ones removed first), in insertion order. */
  listLeases(): Lease[] {
    this.checkExpiry()
    return [...this.entries.values()].map((e) => e.lease)
  }

  /**
   * Removes every lease whose expiration is at or before the clock's now;
   * watchers see one `removed` batch. Call after moving a fake clock.
   */
  checkExpiry(): void {
    if (this.closed) return
    const now = this.clock()
    const removed: LeaseEvent[] = []
    for (const [key, entry] of this.entries) {
      if (entry.expiresAt === undefined || entry.expiresAt > now) continue
      this.entries.delete(key)
      removed.push({ type: 'removed', lease: entry.lease })
    }
    if (removed.length > 0) this.logger.info({ count: removed.length }, 'leases expired')
    this.emit(removed)
  }

  /**
   * Cold stream of lease changes (spec: core.md section 7): on subscribe one
   * batch with every current lease as `added` (possibly empty), then one
   * non-empty batch per change. Renewals arrive as `added`; removals and
   * expiries as `removed` carrying the lease's attributes. Completes on `close()`.
   */
  watchLeases(): Observable<LeaseEvent[]> {
    return new Observable<LeaseEvent[]>((subscriber) => {
      if (this.closed) {
        subscriber.complete()
        return
      }
      this.checkExpiry()
      subscriber.next(this.listLeases().map((lease): LeaseEvent => ({ type: 'added', lease })))
      this.watchers.add(subscriber)
      this.schedule()
      return () => {
        this.watchers.delete(subscriber)
        this.schedule()
      }
    })
  }

  /** Completes every watch, stops the expiry timer and drops all leases. Idempotent. */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true
      const watchers = [...this.watchers]
      this.watchers.clear()
      this.schedule()
      this.entries.clear()
      for (const w of watchers) w.complete()
    }
    return Promise.resolve()
  }

  /** Runs one call: rejects when closed or aborted, applies expiry first. */
  private call<T>(opts: CallOptions, fn: () => T): Promise<T> {
    try {
      if (this.closed) throw new FlannelError('REGISTRY_CLOSED', 'the memory registry is closed')
      throwIfAborted(opts.signal)
      this.checkExpiry()
      return Promise.resolve(fn())
    } catch (err) {
      return Promise.reject(err)
    }
  }

  private write(
    subnet: Ip4Net,
    ipv6Subnet: Ip6Net | undefined,
    attrs: LeaseAttrs,
    reserved: boolean,
  ): Lease {
    const expiresAt = reserved ? undefined : this.clock() + this.ttlMs
    const lease: Lease = {
      subnet,
      ...(ipv6Subnet !== undefined ? { ipv6Subnet } : {}),
      attrs,
      expiration: expiresAt === undefined ? NEVER_EXPIRES : new Date(expiresAt),
    }
    this.entries.set(leaseKey(lease), { lease, expiresAt })
    this.emit([{ type: 'added', lease }])
    return lease
  }

  private delete(key: string): void {
    const entry = this.entries.get(key)
    if (entry === undefined) return
    this.entries.delete(key)
    this.emit([{ type: 'removed', lease: entry.lease }])
  }

  private emit(batch: LeaseEvent[]): void {
    if (batch.length > 0) for (const w of [...this.watchers]) w.next(batch)
    this.schedule()
  }

  /** (Re)arms the expiry timer for the next expiring lease while anyone watches. */
  private schedule(): void {
    if (this.timer !== undefined) clearTimeout(this.timer)
    this.timer = undefined
    if (this.closed || this.watchers.size === 0) return
    let next: number | undefined
    for (const entry of this.entries.values()) {
      if (entry.expiresAt !== undefined && (next === undefined || entry.expiresAt < next)) {
        next = entry.expiresAt
      }
    }
    if (next === undefined) return
    const delay = Math.min(MAX_TIMER_MS, Math.max(0, next - this.clock()))
    this.timer = setTimeout(() => {
      this.timer = undefined
      this.checkExpiry()
    }, delay)
    this.timer.unref?.()
  }
}
