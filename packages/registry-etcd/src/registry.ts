import { setMaxListeners } from 'node:events'
import type { Observable } from 'rxjs'
import {
  ConfigNotFoundError,
  FlannelError,
  parseNetworkConfig,
  throwIfAborted,
  type AcquireOptions,
  type CallOptions,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
  type SubnetRegistry,
} from '@flannel/core'
import { encodeLeaseAttrs, requireCanonicalSubnets, subnetKey } from '@flannel/core/registry'
import type { Etcd3 } from 'etcd3'
import { acquireEtcdLease } from './acquire.js'
import { createEtcdClient } from './client.js'
import { keyLayout, type KeyLayout } from './keys.js'
import { resolveOptions, type EtcdRegistryOptions, type ResolvedOptions } from './options.js'
import { EtcdStore } from './store.js'
import { watchLeaseEvents } from './watch.js'

/** flanneld's text when the config key is missing (spec: core.md section 4.2). */
export const CONFIG_NOT_FOUND_MESSAGE =
  'flannel config not found in etcd store. Did you create your config using etcdv3 API?'

/** Counters of one registry, for metrics and benchmarks. */
export interface EtcdRegistryStats {
  /** Lease creations lost to another host (each followed by a new pick). */
  readonly createConflicts: number
}

/**
 * A `SubnetRegistry` on etcd v3, byte-compatible with flanneld >= v0.18: the
 * network config at `<prefix>/config`, one key per lease at
 * `<prefix>/subnets/<a.b.c.d>-<len>` holding flanneld's JSON, every write
 * attached to a freshly granted etcd lease (86400 s by default).
 *
 * @example
 * ```ts
 * const registry = new EtcdRegistry({ endpoints: 'http://127.0.0.1:2379' })
 * const config = await registry.getNetworkConfig()
 * const lease = await registry.acquireLease({ publicIP: '192.0.2.10', backendType: 'host-gw' })
 * registry.watchLeases().subscribe((events) => console.log(events))
 * await registry.close()
 * ```
 */
export class EtcdRegistry implements SubnetRegistry {
  private readonly options: ResolvedOptions
  private readonly keys: KeyLayout
  private readonly client: Etcd3
  private readonly store: EtcdStore
  private readonly logger: Logger
  private readonly closeController = new AbortController()
  private conflicts = 0
  private closed = false

  /** @throws InvalidArgumentError naming the option when an option is invalid. */
  constructor(options: EtcdRegistryOptions) {
    this.options = resolveOptions(options)
    this.keys = keyLayout(this.options.prefix)
    // Every concurrent call and watch listens on the close signal.
    setMaxListeners(0, this.closeController.signal)
    this.logger = this.options.logger.child({ component: 'etcd-registry' })
    this.client = createEtcdClient(this.options)
    this.store = new EtcdStore(this.client, {
      keys: this.keys,
      requestTimeoutMs: this.options.requestTimeoutMs,
      dialTimeoutMs: this.options.dialTimeoutMs,
      leaseTtlSeconds: this.options.leaseTtlSeconds,
      random: this.options.random,
      logger: this.logger,
    })
  }

  /** The cleaned key prefix in use, e.g. `/coreos.com/network`. */
  get prefix(): string {
    return this.keys.prefix
  }

  /** Counters since construction. */
  get stats(): EtcdRegistryStats {
    return { createConflicts: this.conflicts }
  }

  /**
   * Reads `<prefix>/config` and validates it as flanneld does.
   *
   * @throws ConfigNotFoundError when the key is absent (flanneld's message).
   * @throws ConfigError when the config is invalid.
   * @throws RegistryUnavailableError when etcd cannot be reached within `requestTimeoutMs`.
   */
  async getNetworkConfig(opts: CallOptions = {}): Promise<NetworkConfig> {
    const signal = this.signalFor(opts.signal)
    const text = await this.store.getConfigText(signal)
    if (text === undefined) throw new ConfigNotFoundError(CONFIG_NOT_FOUND_MESSAGE)
    return parseNetworkConfig(text)
  }

  /**
   * Acquires a lease as flanneld does (spec: core.md section 5); a lost
   * create race picks another subnet and tries again.
   *
   * @throws SubnetExhaustedError (`out of subnets`) when nothing is free.
   * @throws InvalidArgumentError when `attrs` cannot be encoded.
   * @throws RegistryUnavailableError when etcd cannot be reached within `requestTimeoutMs` per step.
   * @throws AbortError when `opts.signal` aborts (a lease created meanwhile is revoked).
   */
  async acquireLease(attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const signal = this.signalFor(opts.signal)
    encodeLeaseAttrs(attrs) // validate before touching etcd
    const config = await this.getNetworkConfig({ signal })
    return await acquireEtcdLease({
      store: this.store,
      config,
      attrs,
      previous: opts.previous,
      random: this.options.random,
      logger: this.logger,
      signal,
      onConflict: () => {
        this.conflicts++
      },
    })
  }

  /**
   * Re-writes the lease on a freshly granted etcd lease, keeping its
   * attributes (flanneld's renewal).
   *
   * @throws LeaseNotFoundError when the key no longer exists (it is not re-created).
   * @throws InvalidArgumentError when a subnet of `lease` has host bits set (never a lease).
   * @throws RegistryUnavailableError when etcd cannot be reached within `requestTimeoutMs`.
   */
  async renewLease(lease: Lease, opts: CallOptions = {}): Promise<Lease> {
    requireCanonicalSubnets(lease)
    const signal = this.signalFor(opts.signal)
    const name = subnetKey(lease.subnet, lease.ipv6Subnet)
    const expiration = await this.store.update(name, encodeLeaseAttrs(lease.attrs), {
      mustExist: true,
      signal,
    })
    return { ...lease, expiration }
  }

  /**
   * Deletes the lease's key (a missing key is fine).
   *
   * @throws InvalidArgumentError when a subnet of `lease` has host bits set: its key
   *   (`10.5.34.5-24`) is never a lease, and deleting it is not ours to do.
   */
  async releaseLease(lease: Lease, opts: CallOptions = {}): Promise<void> {
    requireCanonicalSubnets(lease)
    const signal = this.signalFor(opts.signal)
    await this.store.remove(subnetKey(lease.subnet, lease.ipv6Subnet), signal)
  }

  /**
   * Cold stream of lease changes (spec: core.md section 7): on subscribe one
   * batch with every lease as `added`, then one batch per etcd change. After
   * a compaction or a lost connection the registry re-lists and emits only
   * the differences; during an outage it stays silent and retries with
   * backoff. Unparsable entries are logged and skipped. The stream completes
   * when the registry is closed.
   */
  watchLeases(): Observable<LeaseEvent[]> {
    return watchLeaseEvents(this.store, {
      keys: this.keys,
      logger: this.logger,
      random: this.options.random,
      closed: this.closeController.signal,
    })
  }

  /** Stops every watch and closes the etcd connections. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return
    this.closed = true
    this.closeController.abort()
    // Let cancelled watches and in-flight calls unwind before the channels go.
    await new Promise((resolve) => setImmediate(resolve))
    this.client.close()
  }

  /** The caller's signal combined with the registry's own close signal. */
  private signalFor(signal: AbortSignal | undefined): AbortSignal {
    if (this.closed) throw new FlannelError('REGISTRY_CLOSED', 'the etcd registry is closed')
    throwIfAborted(signal)
    if (signal === undefined) return this.closeController.signal
    const combined = AbortSignal.any([signal, this.closeController.signal])
    setMaxListeners(0, combined)
    return combined
  }
}
