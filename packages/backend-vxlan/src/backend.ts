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
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type ExternalInterface,
  type RegisterOptions,
  type StoredAttrs,
} from '@flannel/core'
import {
  FLANNEL_ROUTE_PROTOCOL,
  NetlinkHostNetwork,
  type AddressFamily,
  type CommandRunner,
  type HostNetwork,
} from '@flannel/linux'
import { normalizeMac, runCommand, vxlanMaxMtu } from '@flannel/linux/backend'
import { configureDevice, ensureDevice, randomVtepMac, setDeviceMtu } from './device.js'
import { VxlanDeviceError } from './errors.js'
import { inPodNetwork, VxlanNetwork, type LocalPlane } from './network.js'
import { deviceName, parseVxlanConfig, VXLAN_OVERHEAD } from './options.js'

/** Options of {@link VxlanBackend}. */
export interface VxlanOptions {
  /** Where devices and entries are written; default a {@link NetlinkHostNetwork} on the process's namespace. */
  readonly host?: HostNetwork | undefined
  /**
   * `rtm_protocol` of the routes this backend installs, by which it finds its
   * own direct routes again after a restart. Default {@link FLANNEL_ROUTE_PROTOCOL}.
   */
  readonly routeProtocol?: number | undefined
  /** Full check of the device and every entry every so many milliseconds; default 5000. */
  readonly checkIntervalMs?: number | undefined
  /** Delay before a repair triggered by a kernel notification, to batch bursts; default 20. */
  readonly repairDelayMs?: number | undefined
  /** Attempts per peer before an `Added` is reported failed; default 3 (flanneld: 10). */
  readonly attempts?: number | undefined
  /** First wait between attempts, doubling; default 100 ms. */
  readonly retryBaseMs?: number | undefined
  /**
   * `false` switches tx checksum offload off on the device (`ethtool -K <dev>
   * tx off`), the workaround for the 63-second stall some kernels show with
   * vxlan behind NAT. Overrides the config's `Backend.TxChecksumOffload`.
   * Default: leave the kernel's setting.
   */
  readonly txChecksumOffload?: boolean | undefined
  /** Runs `ethtool`; default in this process's namespace. */
  readonly commandRunner?: CommandRunner | undefined
  /** Where accept_ra is switched off; default `/proc/sys`. Set to `false` to skip (e.g. for a remote namespace). */
  readonly procSys?: string | false | undefined
}

/**
 * flannel's vxlan backend (spec backends.md 1): an in-kernel VXLAN device
 * `flannel.<VNI>` holding `<subnet>/32`, and per peer a permanent neighbour,
 * a permanent FDB entry to its PublicIP and an onlink route. Beyond flanneld
 * it adopts existing state on start, deletes entries no lease wants, and
 * repairs deleted devices and entries within about a second.
 */
export class VxlanBackend implements Backend {
  /** `vxlan`. */
  readonly type = 'vxlan'
  private readonly ctx: BackendContext
  private readonly options: VxlanOptions
  private readonly logger: Logger

  constructor(ctx: BackendContext, options: VxlanOptions = {}) {
    this.ctx = ctx
    this.options = options
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'vxlan' })
  }

  /**
   * Creates or adopts the device(s) and says what to publish
   * (`{"VNI":n,"VtepMAC":"..."}`); `activate` then sets the device address
   * from the lease and brings it up. On failure of either step, and on
   * `abort`, every device it created is deleted (adopted ones are kept).
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    throwIfAborted(opts.signal)
    const vx = parseVxlanConfig(config)
    const ext = this.ctx.extIface
    const host = this.options.host ?? new NetlinkHostNetwork({ logger: this.logger })
    const baseMtu = vx.mtu ?? ext.mtu
    const mtu = baseMtu - VXLAN_OVERHEAD
    const txOffload = this.options.txChecksumOffload ?? vx.txChecksumOffload
    const warnings: string[] = []
    const tuneDevice = async (name: string): Promise<void> => {
      await this.disableAcceptRa(name)
      if (txOffload !== false) return
      const run = this.options.commandRunner ?? runCommand
      try {
        await run('ethtool', ['-K', name, 'tx', 'off'])
      } catch (error) {
        const message = `could not switch tx checksum offload off on ${name}: ${(error as Error).message}`
        this.logger.warn({ err: error }, message)
        warnings.push(message)
      }
    }

    const families: { family: AddressFamily; local: string | undefined }[] = []
    if (config.enableIPv4) families.push({ family: 'inet', local: ext.extAddr })
    if (config.enableIPv6) families.push({ family: 'inet6', local: ext.extV6Addr })

    const created: number[] = []
    const planes: LocalPlane[] = []
    // flanneld's GetStoredMacAddresses: a device created now takes the MAC
    // this host published before (kube mode), so peers' entries stay right.
    const stored = families.length > 0 ? await opts.storedAttrs?.() : undefined
    const abort = async (): Promise<void> => {
      for (const index of created.splice(0)) await host.deleteLink(index).catch(() => undefined)
    }
    try {
      for (const { family, local } of families) {
        const name = deviceName(vx.vni, family)
        if (!local) {
          throw new VxlanDeviceError(
            name,
            `failed to create ${name}: interface ${ext.name} has no ${family === 'inet' ? 'IPv4' : 'IPv6'} address`,
          )
        }
        const spec = {
          name,
          vni: vx.vni,
          local,
          lowerIndex: ext.index,
          port: vx.port,
          learning: vx.learning,
          gbp: vx.gbp,
          // What the kernel allows over the underlay (less over IPv6, or with an MTU
          // option above the interface's); the repair loop keeps the device there.
          mtu: Math.min(mtu, vxlanMaxMtu(ext.mtu, local)),
        }
        const storedMac = this.storedMac(stored, family, name)
        if (storedMac !== undefined) {
          this.logger.info({ device: name }, `Interface ${name} mac address set to: ${storedMac}`)
        }
        const { link, created: isNew } = await ensureDevice(
          host,
          { ...spec, mac: storedMac ?? randomVtepMac() },
          this.logger,
        )
        if (isNew) created.push(link.index)
        await tuneDevice(name)
        // A kept device gets the MTU too (flanneld kept whatever it had).
        const previous = await setDeviceMtu(host, link, spec.mtu).catch((error: unknown) => {
          const message = `could not set the MTU of ${name} to ${spec.mtu}: ${(error as Error).message}`
          this.logger.warn({ err: error }, message)
          warnings.push(message)
          return undefined
        })
        const current = previous === undefined ? link : { ...link, mtu: spec.mtu }
        planes.push({ family, spec: { ...spec, mac: link.mac! }, address: '', link: current })
        throwIfAborted(opts.signal)
      }

      const v4 = planes.find((p) => p.family === 'inet')
      const v6 = planes.find((p) => p.family === 'inet6')
      const attrs: LeaseAttrs = {
        publicIP: v4 && ext.extAddr ? ext.extAddr : '0.0.0.0',
        ...(v6 && ext.extV6Addr ? { publicIPv6: ext.extV6Addr } : {}),
        backendType: 'vxlan',
        ...(v4 ? { backendData: { VNI: vx.vni, VtepMAC: v4.spec.mac } } : {}),
        ...(v6 ? { backendV6Data: { VNI: vx.vni, VtepMAC: v6.spec.mac } } : {}),
      }
      return {
        attrs,
        abort,
        activate: async (lease, activateOpts = {}) => {
          try {
            return await this.activate(config, lease, host, planes, {
              mtu,
              ext,
              tuneDevice,
              warnings,
              directRouting: vx.directRouting,
              signal: activateOpts.signal,
            })
          } catch (error) {
            await abort()
            throw error
          }
        },
      }
    } catch (error) {
      await abort()
      throw error
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates; on
   * failure every device it created is deleted and the lease released.
   *
   * @deprecated The Agent calls {@link VxlanBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }

  private async activate(
    config: NetworkConfig,
    acquired: Lease,
    host: HostNetwork,
    planes: LocalPlane[],
    o: {
      mtu: number
      ext: ExternalInterface
      tuneDevice: (name: string) => Promise<void>
      warnings: string[]
      directRouting: boolean
      signal: AbortSignal | undefined
    },
  ): Promise<Network> {
    const { mtu, ext, tuneDevice, warnings } = o
    throwIfAborted(o.signal)
    for (const plane of planes) {
      const subnet = plane.family === 'inet' ? acquired.subnet : acquired.ipv6Subnet
      if (!subnet || subnet.isEmpty) {
        const fam = plane.family === 'inet' ? 'IPv4' : 'IPv6'
        throw new VxlanDeviceError(
          plane.spec.name,
          `failed to configure interface ${plane.spec.name}: ${fam} is enabled but the lease has no ${fam}`,
        )
      }
      const address = subnet.address
      await configureDevice(
        host,
        plane.link,
        plane.family,
        address,
        (ip) => inPodNetwork(config, ip),
        plane.spec.mac,
      )
      ;(plane as { address: string }).address = address
      plane.link = (await host.getLink(plane.link.index)) ?? plane.link
    }
    const lease = acquired
    this.logger.info(
      { subnet: lease.subnet.toString(), devices: planes.map((p) => p.spec.name) },
      'vxlan network ready',
    )
    return new VxlanNetwork({
      lease,
      mtu,
      ext,
      config,
      host,
      logger: this.logger,
      planes,
      directRouting: o.directRouting,
      routeProtocol: this.options.routeProtocol ?? FLANNEL_ROUTE_PROTOCOL,
      checkIntervalMs: this.options.checkIntervalMs ?? 5000,
      repairDelayMs: this.options.repairDelayMs ?? 20,
      attempts: this.options.attempts ?? 3,
      retryBaseMs: this.options.retryBaseMs ?? 100,
      tuneDevice,
      startWarnings: warnings,
    })
  }

  /**
   * The `VtepMAC` of `family` in the stored backend data, when it is a
   * unicast MAC; anything else is logged and ignored (a random MAC is used).
   */
  private storedMac(
    stored: StoredAttrs | undefined,
    family: AddressFamily,
    device: string,
  ): string | undefined {
    const data = family === 'inet' ? stored?.backendData : stored?.backendV6Data
    const mac = (data as { VtepMAC?: unknown } | null | undefined)?.VtepMAC
    if (mac === undefined) return undefined
    try {
      if (typeof mac !== 'string') throw new Error(`not a string: ${JSON.stringify(mac)}`)
      const normal = normalizeMac(mac, 'VtepMAC')
      if ((parseInt(normal.slice(0, 2), 16) & 1) === 1 || normal === '00:00:00:00:00:00') {
        throw new Error(`${normal} is not a unicast address`)
      }
      return normal
    } catch (error) {
      this.logger.warn(
        { device, err: error },
        `ignoring the stored VtepMAC for ${device}: ${(error as Error).message}`,
      )
      return undefined
    }
  }

  private async disableAcceptRa(name: string): Promise<void> {
    const root = this.options.procSys ?? '/proc/sys'
    if (root === false) return
    const { writeFile } = await import('node:fs/promises')
    // flanneld ignores failures here too (no IPv6 in the kernel, read-only /proc).
    await writeFile(`${root}/net/ipv6/conf/${name}/accept_ra`, '0').catch(() => undefined)
  }
}

/**
 * The `vxlan` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [vxlan({ ... })] })`. Each
 * agent start creates a fresh {@link VxlanBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [vxlan()] })
 * ```
 */
export function vxlan(options: VxlanOptions = {}): BackendFactory {
  return defineBackend('vxlan', (ctx) => new VxlanBackend(ctx, options))
}

/**
 * Creates a {@link VxlanBackend} with default options (the older table form,
 * `backends: { vxlan: createBackend }`).
 *
 * @deprecated Use `vxlan(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): VxlanBackend => new VxlanBackend(ctx)
