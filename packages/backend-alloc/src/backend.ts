import {
  defineBackend,
  registerPrepared,
  silentLogger,
  throwIfAborted,
  type Backend,
  type BackendContext,
  type BackendFactory,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkConfig,
  type NetworkEvent,
  type PreparedNetwork,
  type PrepareOptions,
  type RegisterOptions,
} from '@flannel/core'
import { NEVER, type Observable } from 'rxjs'

/**
 * flannel's alloc backend (spec: backends.md 4): acquires this host's lease,
 * publishing `PublicIP` only (as flanneld, even in dual-stack mode), and changes nothing on the
 * host. Its network does not watch peers; routing is left to something else.
 * The MTU is the external interface's.
 */
export class AllocBackend implements Backend {
  /** `alloc`. */
  readonly type = 'alloc'
  private readonly ctx: BackendContext
  private readonly logger: Logger

  constructor(ctx: BackendContext) {
    this.ctx = ctx
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'alloc' })
  }

  /**
   * Says what to publish (`PublicIP` only); changes nothing. The network is
   * the lease and the external interface's MTU.
   */
  async prepare(_config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    throwIfAborted(opts.signal)
    const ext = this.ctx.extIface
    // flanneld's alloc publishes PublicIP only, even in dual-stack mode.
    const attrs: LeaseAttrs = { publicIP: ext.extAddr ?? '0.0.0.0' }
    return {
      attrs,
      activate: async (lease) => {
        this.logger.info({ subnet: lease.subnet.toString() }, 'alloc lease acquired')
        return new AllocNetwork(lease, ext.mtu)
      },
      abort: async () => undefined,
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates. Failures
   * other than an abort are reported as `failed to acquire lease: <reason>`
   * (flanneld's wording); an abort after the lease was acquired releases it again.
   *
   * @deprecated The Agent calls {@link AllocBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }
}

/** The alloc backend's network: a lease and an MTU; `run` only waits to be unsubscribed. */
class AllocNetwork implements Network {
  constructor(
    readonly lease: Lease,
    readonly mtu: number,
  ) {}

  run(_events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return NEVER
  }
}

/**
 * The `alloc` backend for an `Agent`'s list:
 * `new Agent({ registry, extIface, backends: [alloc()] })`. It takes no options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [alloc()] })
 * ```
 */
export function alloc(): BackendFactory {
  return defineBackend('alloc', (ctx) => new AllocBackend(ctx))
}

/**
 * Creates an {@link AllocBackend} (the older table form, `backends: { alloc: createBackend }`).
 *
 * @deprecated Use `alloc()` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): AllocBackend => new AllocBackend(ctx)
