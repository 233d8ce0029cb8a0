import type { Observable } from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import type { Lease, LeaseAttrs, LeaseEvent, PreviousSubnets } from '../lease/types.js'
import type { Logger } from '../logger.js'
import type { StoredAttrs, SubnetRegistry } from '../registry/types.js'

/** The host's external interface, as selected by flanneld's rules (core.md 10.1). */
export interface ExternalInterface {
  /** Interface name, e.g. `eth0`. */
  readonly name: string
  /** Interface index. */
  readonly index: number
  /** Interface MTU. */
  readonly mtu: number
  /** The interface's IPv4 address (`IfaceAddr`). */
  readonly ifaceAddr?: string | undefined
  /** The interface's IPv6 address (`IfaceV6Addr`). */
  readonly ifaceV6Addr?: string | undefined
  /** The address published as `PublicIP` (`--public-ip`, else `ifaceAddr`). */
  readonly extAddr?: string | undefined
  /** The address published as `PublicIPv6`. */
  readonly extV6Addr?: string | undefined
}

/** What a backend factory receives. */
export interface BackendContext {
  /**
   * The registry. Backends do not call it: the Agent owns the lease. It is
   * there for the deprecated one-call `registerNetwork`.
   */
  readonly registry: SubnetRegistry
  /** The external interface. */
  readonly extIface: ExternalInterface
  /** Logger; silent by default. */
  readonly logger?: Logger | undefined
}

/** Options of {@link Backend.registerNetwork}. */
export interface RegisterOptions {
  /** Aborts registration; anything half-done is undone. */
  readonly signal?: AbortSignal | undefined
  /** Subnets held before (from subnet.env). */
  readonly previous?: PreviousSubnets | undefined
}

/** Options of {@link Backend.prepare}. */
export interface PrepareOptions {
  /** Aborts preparation; anything half-done is undone. */
  readonly signal?: AbortSignal | undefined
  /**
   * Reads what this host published the last time, as the registry keeps it
   * (`SubnetRegistry.storedAttrs`; kube mode: the own Node's annotations).
   * The Agent passes it in so that backends never call the registry, and it
   * is a function so that only a backend that uses it pays the read: the
   * vxlan backend gives a device it creates the `VtepMAC` found here, as
   * flanneld's GetStoredMacAddresses.
   */
  readonly storedAttrs?: (() => Promise<StoredAttrs | undefined>) | undefined
}

/**
 * A backend's local preparation, done before any lease exists: what to
 * publish, and the two ways on. The lease owner (the `Agent`, or
 * {@link registerPrepared}) acquires the lease with {@link attrs}, then
 * calls {@link activate}; when acquiring, activating or any later start-up
 * step fails, it calls {@link abort} and releases the lease.
 */
export interface PreparedNetwork {
  /** The attributes to publish in this host's lease (`PublicIP`, `BackendType`, backend data). */
  readonly attrs: LeaseAttrs
  /**
   * Finishes the set-up with the acquired lease (device address, own route)
   * and returns the running network. Never calls the registry. On failure
   * it leaves what {@link abort} can undo.
   */
  activate(lease: Lease, opts?: PrepareOptions): Promise<Network>
  /**
   * Undoes {@link Backend.prepare} and, after it, {@link activate}: devices
   * created, routes added, sockets opened. Best effort, never rejects; may
   * be called more than once.
   */
  abort(): Promise<void>
}

/** A backend: one way of carrying traffic between the hosts' subnets. */
export interface Backend {
  /** The lower-cased `Backend.Type` this backend serves (`vxlan`, `host-gw`, ...). */
  readonly type: string
  /**
   * Prepares local state (devices, discovery, keys) and says what to
   * publish; the lease is acquired by the caller, never by the backend. On
   * failure nothing it created is left behind.
   */
  prepare?(config: NetworkConfig, opts?: PrepareOptions): Promise<PreparedNetwork>
  /**
   * Prepares, acquires this host's lease and activates, in one call (the
   * backends of this project implement it with {@link registerPrepared}).
   * The Agent uses it only for a backend without {@link prepare}.
   *
   * @deprecated Implement {@link prepare}; the lease owner acquires the lease.
   */
  registerNetwork?(config: NetworkConfig, opts?: RegisterOptions): Promise<Network>
}

/** What a {@link Network} reports while it applies lease events. */
export type NetworkEvent =
  | { readonly type: 'applied'; readonly action: 'add' | 'remove'; readonly lease: Lease }
  | { readonly type: 'ignored'; readonly lease: Lease; readonly reason: string }
  | {
      readonly type: 'failed'
      readonly action: 'add' | 'remove'
      readonly lease: Lease
      readonly error: unknown
    }
  | { readonly type: 'repaired'; readonly what: string; readonly detail?: string }
  | { readonly type: 'warning'; readonly message: string; readonly error?: unknown }

/** A registered network: this host's lease and the long-running part of the backend. */
export interface Network {
  /** This host's lease. */
  readonly lease: Lease
  /** The MTU for workloads (`FLANNEL_MTU`). */
  readonly mtu: number
  /**
   * Applies peers' lease events (never this host's own lease) to the host or
   * cloud until unsubscribed, and emits what it did.
   */
  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent>
}

/**
 * A backend as the {@link Agent} takes it: the lower-cased `Backend.Type` it
 * serves and how to create it for a context, with its options already bound.
 * Every backend package exports one as an options-first function
 * (`vxlan({ txChecksumOffload: false })`, `hostGw()`, `awsVpc({ region })`);
 * {@link defineBackend} makes one for a backend of your own.
 */
export interface BackendFactory {
  /** The lower-cased `Backend.Type` this factory serves (`vxlan`, `host-gw`, ...). */
  readonly type: string
  /**
   * Creates the backend. May be async, so that a factory can import its
   * package (and that package's SDKs) only when its type is configured.
   */
  create(ctx: BackendContext): Backend | Promise<Backend>
}

/**
 * A function creating a backend for a context: the entries of the older
 * {@link BackendTable} form (`{ vxlan: createBackend }`).
 *
 * @deprecated Pass {@link BackendFactory} values (`vxlan()`, `hostGw()`, ...) in a list instead.
 */
export type CreateBackend = (ctx: BackendContext) => Backend
