import {
  backendOption,
  ConfigError,
  defineBackend,
  registerPrepared,
  formatIp4,
  InvalidArgumentError,
  isIp4,
  silentLogger,
  throwIfAborted,
  type Backend,
  type BackendContext,
  type BackendFactory,
  type Lease,
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type RegisterOptions,
} from '@flannel/core'
import { NetlinkHostNetwork, isNetlinkError, type HostNetwork } from '@flannel/linux'
import { UdpDatapath, type UdpLoopMode } from './datapath.js'
import { UdpNetwork } from './network.js'

/** flanneld's default UDP port of the udp backend. */
export const DEFAULT_UDP_PORT = 8285

/** IPv4 (20) + UDP (8): what encapsulation adds to every packet. */
export const UDP_OVERHEAD = 28

/** Options of {@link UdpBackend} (the flannel config's `Backend.Port` is read from the network config). */
export interface UdpBackendOptions {
  /** Where the address, MTU and route of the TUN are written; default a {@link NetlinkHostNetwork}. */
  readonly host?: HostNetwork | undefined
  /** How packets are moved; default `offload` (falls back to `batch` where offloads are refused). */
  readonly datapath?: UdpLoopMode | undefined
  /**
   * The former name of {@link UdpBackendOptions.datapath}.
   *
   * @deprecated Use `datapath`; when both are given they must agree.
   */
  readonly mode?: UdpLoopMode | undefined
  /** Packets per `recvmmsg`/`sendmmsg`; default 64. */
  readonly batchSize?: number | undefined
  /**
   * Drop datagrams whose sender is not a peer's `PublicIP:Port` and inner
   * packets whose source is outside that peer's subnet; default true. Turn
   * off only behind NAT, where peers' datagrams arrive from other addresses.
   */
  readonly verifySource?: boolean | undefined
  /** TUN name or template; default `flannel%d` (the kernel picks `flannel0` when free). */
  readonly device?: string | undefined
}

/**
 * flannel's udp backend: a TUN device carrying the whole pod network, and a
 * native loop that sends each packet read from it, unchanged, as the payload
 * of a UDP datagram to the peer owning the destination subnet (and the other
 * way round). Wire-compatible with flanneld's udp backend.
 */
export class UdpBackend implements Backend {
  /** `udp`. */
  readonly type = 'udp'
  private readonly ctx: BackendContext
  private readonly options: UdpBackendOptions
  private readonly logger: Logger

  constructor(ctx: BackendContext, options: UdpBackendOptions = {}) {
    this.ctx = ctx
    this.options = options
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'udp' })
  }

  /**
   * Checks the options and says what to publish (`PublicIP` only);
   * `activate` then creates the TUN with `<subnet>/32`, MTU = interface MTU
   * - 28, brings it up, routes the whole network through it and binds the
   * UDP socket. On failure, and on `abort`, everything is undone (the device
   * closes).
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    throwIfAborted(opts.signal)
    const port = readPort(config)
    const datapathMode = resolveDatapath(this.options)
    const batchSize = this.options.batchSize ?? 64
    if (!Number.isInteger(batchSize) || batchSize < 1 || batchSize > 1024) {
      throw new InvalidArgumentError('batchSize', batchSize, 'expected an integer in 1..1024')
    }
    const ext = this.ctx.extIface
    if (!config.enableIPv4 || !config.network) {
      throw new ConfigError('the udp backend supports IPv4 only', 'EnableIPv4', config.enableIPv4)
    }
    if (!ext.ifaceAddr || !isIp4(ext.ifaceAddr)) {
      throw new InvalidArgumentError(
        'extIface.ifaceAddr',
        ext.ifaceAddr,
        'the udp backend needs the interface IPv4 address',
      )
    }
    const mtu = ext.mtu - UDP_OVERHEAD
    const host = this.options.host ?? new NetlinkHostNetwork({ logger: this.logger })
    const ownHost = this.options.host === undefined
    const ifaceAddr = ext.ifaceAddr
    const network = config.network
    let datapath: UdpDatapath | undefined
    const abort = async (): Promise<void> => {
      datapath?.close()
      datapath = undefined
      if (ownHost) await host.close().catch(() => undefined)
    }
    const activate = async (lease: Lease, activateOpts: PrepareOptions = {}): Promise<Network> => {
      try {
        return await this.activate(
          config,
          lease,
          host,
          ifaceAddr,
          network.toString(),
          port,
          mtu,
          batchSize,
          datapathMode,
          ownHost,
          (d) => (datapath = d),
          activateOpts.signal,
        )
      } catch (error) {
        await abort()
        throw error
      }
    }
    return { attrs: { publicIP: ext.extAddr ?? ext.ifaceAddr }, activate, abort }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates; on
   * failure everything is undone and the lease released.
   *
   * @deprecated The Agent calls {@link UdpBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }

  private async activate(
    config: NetworkConfig,
    lease: Lease,
    host: HostNetwork,
    ifaceAddr: string,
    network: string,
    port: number,
    mtu: number,
    batchSize: number,
    mode: UdpLoopMode,
    ownHost: boolean,
    opened: (datapath: UdpDatapath) => void,
    signal: AbortSignal | undefined,
  ): Promise<Network> {
    throwIfAborted(signal)
    const tunAddr = formatIp4(lease.subnet.ip)
    const datapath = UdpDatapath.open({
      device: this.options.device ?? 'flannel%d',
      bindAddr: ifaceAddr,
      port,
      tunAddr,
      mtu,
      mode,
      batchSize,
      verifySource: this.options.verifySource ?? true,
    })
    opened(datapath)
    await configureTun(host, datapath.device, tunAddr, mtu, network)
    throwIfAborted(signal)
    this.logger.info(
      { subnet: lease.subnet.toString(), device: datapath.device, mode: datapath.mode, port },
      'udp network ready',
    )
    return new UdpNetwork({
      lease,
      mtu,
      datapath,
      logger: this.logger,
      config,
      onClose: ownHost ? () => host.close() : undefined,
    })
  }
}

/**
 * The `udp` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [udp({ ... })] })`. Each
 * agent start creates a fresh {@link UdpBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [udp()] })
 * ```
 */
export function udp(options: UdpBackendOptions = {}): BackendFactory {
  return defineBackend('udp', (ctx) => new UdpBackend(ctx, options))
}

/**
 * Creates a {@link UdpBackend} with default options (the older table form,
 * `backends: { udp: createBackend }`).
 *
 * @deprecated Use `udp(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): UdpBackend => new UdpBackend(ctx)

const LOOP_MODES: readonly UdpLoopMode[] = ['single', 'batch', 'offload']

/** The `datapath` option, or its deprecated alias `mode`; default `offload`. */
function resolveDatapath(options: UdpBackendOptions): UdpLoopMode {
  const { datapath, mode } = options
  for (const [field, value] of [
    ['datapath', datapath],
    ['mode', mode],
  ] as const) {
    if (value !== undefined && !LOOP_MODES.includes(value)) {
      throw new InvalidArgumentError(field, value, `expected one of ${LOOP_MODES.join(', ')}`)
    }
  }
  if (datapath !== undefined && mode !== undefined && datapath !== mode) {
    throw new InvalidArgumentError(
      'mode',
      mode,
      `disagrees with datapath ${JSON.stringify(datapath)} (mode is the deprecated name of datapath: give datapath only)`,
    )
  }
  return datapath ?? mode ?? 'offload'
}

function readPort(config: NetworkConfig): number {
  const port = backendOption(config.backend, 'Port', 'number') ?? DEFAULT_UDP_PORT
  if (!Number.isInteger(port) || port < 1 || port > 65535) {
    throw new ConfigError(
      `invalid Backend.Port ${JSON.stringify(port)}: expected an integer in 1..65535`,
      'Backend.Port',
      port,
    )
  }
  return port
}

/** Address `<subnet>/32`, MTU, up, and one route for the whole network (an existing one is kept). */
async function configureTun(
  host: HostNetwork,
  device: string,
  tunAddr: string,
  mtu: number,
  network: string,
): Promise<void> {
  const link = await host.getLink(device)
  if (!link) throw new Error(`TUN device ${device} vanished after creation`)
  await host.addAddress({
    linkIndex: link.index,
    family: 'inet',
    address: tunAddr,
    prefixLength: 32,
  })
  await host.setLinkMtu(link.index, mtu)
  await host.setLinkUp(link.index, true)
  try {
    await host.addRoute({ family: 'inet', dst: network, linkIndex: link.index })
  } catch (error) {
    if (!(isNetlinkError(error) && error.errno === 'EEXIST')) throw error
  }
}
