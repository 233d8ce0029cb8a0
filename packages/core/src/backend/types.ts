import type { Observable } from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import type { Lease, LeaseEvent, PreviousSubnets } from '../lease/types.js'
import type { Logger } from '../logger.js'
import type { SubnetRegistry } from '../registry/types.js'

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
  /** Where the backend acquires its lease. */
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

/** A backend: one way of carrying traffic between the hosts' subnets. */
export interface Backend {
  /** The lower-cased `Backend.Type` this backend serves (`vxlan`, `host-gw`, ...). */
  readonly type: string
  /**
   * Prepares local state, acquires this host's lease and returns the network.
   * On failure nothing it created is left behind.
   */
  registerNetwork(config: NetworkConfig, opts?: RegisterOptions): Promise<Network>
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
