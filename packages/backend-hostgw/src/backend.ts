import {
  defineBackend,
  registerPrepared,
  silentLogger,
  throwIfAborted,
  type Backend,
  type BackendContext,
  type BackendFactory,
  type ExternalInterface,
  type LeaseAttrs,
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type RegisterOptions,
} from '@flannel/core'
import { FLANNEL_ROUTE_PROTOCOL, NetlinkHostNetwork, type HostNetwork } from '@flannel/linux'
import { normalizeIp } from '@flannel/linux/backend'
import { PublicIpNotLocalError } from './errors.js'
import { HostGwNetwork } from './network.js'

/** Options of {@link HostGwBackend}. */
export interface HostGwOptions {
  /** Where routes are written; default a {@link NetlinkHostNetwork} on the process's namespace. */
  readonly host?: HostNetwork | undefined
  /**
   * `rtm_protocol` of the routes this backend installs, by which it finds its
   * own routes again after a restart. Default {@link FLANNEL_ROUTE_PROTOCOL}.
   */
  readonly routeProtocol?: number | undefined
  /** Full check of every route every so many milliseconds; default 10000 (flanneld's interval). */
  readonly checkIntervalMs?: number | undefined
  /** Delay before a repair triggered by a kernel notification, to batch bursts; default 20. */
  readonly repairDelayMs?: number | undefined
}

/**
 * flannel's host-gw backend: every peer's subnet is routed via the peer's
 * PublicIP on the external interface (`ip route replace <subnet> via
 * <PublicIP> dev <iface>`). Needs all hosts on one L2 segment.
 */
export class HostGwBackend implements Backend {
  /** `host-gw`. */
  readonly type = 'host-gw'
  private readonly ctx: BackendContext
  private readonly options: HostGwOptions
  private readonly logger: Logger

  constructor(ctx: BackendContext, options: HostGwOptions = {}) {
    this.ctx = ctx
    this.options = options
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'host-gw' })
  }

  /**
   * Checks that the published addresses are the external interface's own
   * and says what to publish (`BackendType "host-gw"`, no backend data).
   * Rejects with {@link PublicIpNotLocalError} otherwise; nothing is changed
   * on the host, so `abort` has nothing to undo.
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    throwIfAborted(opts.signal)
    const ext = this.ctx.extIface
    const host = this.options.host ?? new NetlinkHostNetwork({ logger: this.logger })
    await checkPublicAddresses(config, ext, host)
    throwIfAborted(opts.signal)

    const attrs: LeaseAttrs = {
      publicIP: config.enableIPv4 && ext.extAddr ? ext.extAddr : '0.0.0.0',
      ...(config.enableIPv6 && ext.extV6Addr ? { publicIPv6: ext.extV6Addr } : {}),
      backendType: 'host-gw',
    }
    return {
      attrs,
      activate: async (lease) => {
        this.logger.info({ subnet: lease.subnet.toString() }, 'host-gw lease acquired')
        return new HostGwNetwork({
          lease,
          mtu: ext.mtu,
          ext,
          config,
          host,
          logger: this.logger,
          routeProtocol: this.options.routeProtocol ?? FLANNEL_ROUTE_PROTOCOL,
          checkIntervalMs: this.options.checkIntervalMs ?? 10_000,
          repairDelayMs: this.options.repairDelayMs ?? 20,
        })
      },
      abort: async () => undefined,
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` (released again when
   * aborted meanwhile) and activates.
   *
   * @deprecated The Agent calls {@link HostGwBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }
}

/**
 * The `host-gw` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [hostGw({ ... })] })`. Each
 * agent start creates a fresh {@link HostGwBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [hostGw()] })
 * ```
 */
export function hostGw(options: HostGwOptions = {}): BackendFactory {
  return defineBackend('host-gw', (ctx) => new HostGwBackend(ctx, options))
}

/**
 * Creates a {@link HostGwBackend} with default options (the older table form,
 * `backends: { 'host-gw': createBackend }`).
 *
 * @deprecated Use `hostGw(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): HostGwBackend => new HostGwBackend(ctx)

async function checkPublicAddresses(
  config: NetworkConfig,
  ext: ExternalInterface,
  host: HostNetwork,
): Promise<void> {
  const families: {
    on: boolean
    pub: string | undefined
    iface: string | undefined
    family: 'inet' | 'inet6'
  }[] = [
    { on: config.enableIPv4, pub: ext.extAddr, iface: ext.ifaceAddr, family: 'inet' },
    { on: config.enableIPv6, pub: ext.extV6Addr, iface: ext.ifaceV6Addr, family: 'inet6' },
  ]
  for (const f of families) {
    if (!f.on) continue
    if (
      f.pub === undefined ||
      f.iface === undefined ||
      normalizeIp(f.pub) !== normalizeIp(f.iface)
    ) {
      throw new PublicIpNotLocalError(f.pub ?? '', ext.name)
    }
    const own = await host.listAddresses({ linkIndex: ext.index, family: f.family })
    if (!own.some((a) => a.address === normalizeIp(f.pub!))) {
      throw new PublicIpNotLocalError(
        f.pub,
        ext.name,
        `host-gw: PublicIP ${f.pub} is not an address of interface ${ext.name}`,
      )
    }
  }
}
