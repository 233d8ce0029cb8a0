import { ConfigError, backendOption, type NetworkConfig } from '@flannel/core'

/** The vxlan options of a network config's `Backend` object (backends.md 1.1). */
export interface VxlanConfig {
  /** VXLAN network identifier; default 1. Also part of the device name. */
  readonly vni: number
  /** UDP destination port; 0 means the kernel default 8472. */
  readonly port: number
  /** Group Based Policy extension. */
  readonly gbp: boolean
  /** Kernel MAC learning on the device. */
  readonly learning: boolean
  /** Plain routes via the peer's PublicIP when it is on the same L2 segment. */
  readonly directRouting: boolean
  /** Base MTU from which 50 is subtracted; undefined = the external interface's MTU. */
  readonly mtu: number | undefined
  /**
   * Not a flanneld option: `false` switches tx checksum offload off on the
   * device (the workaround for the 63-second stall of vxlan behind some NAT
   * setups). Undefined leaves the kernel default.
   */
  readonly txChecksumOffload: boolean | undefined
}

/** Bytes of VXLAN encapsulation over IPv4: outer IP 20 + UDP 8 + VXLAN 8 + inner Ethernet 14. */
export const VXLAN_OVERHEAD = 50

/**
 * Reads the vxlan options from `config.backend` with Go's case-insensitive
 * decoding; wrong types and out-of-range values throw {@link ConfigError}
 * naming `Backend.<Option>` and the value.
 */
export function parseVxlanConfig(config: NetworkConfig): VxlanConfig {
  const b = config.backend
  const vni = backendOption(b, 'VNI', 'integer') ?? 1
  if (vni < 0 || vni > 0xffffff) {
    throw new ConfigError(
      `invalid Backend.VNI ${vni}: must be between 0 and 16777215`,
      'Backend.VNI',
      vni,
    )
  }
  const port = backendOption(b, 'Port', 'integer') ?? 0
  if (port < 0 || port > 65535) {
    throw new ConfigError(
      `invalid Backend.Port ${port}: must be between 0 and 65535`,
      'Backend.Port',
      port,
    )
  }
  const mtu = backendOption(b, 'MTU', 'integer')
  if (mtu !== undefined && mtu !== 0 && mtu <= VXLAN_OVERHEAD + 67) {
    throw new ConfigError(
      `invalid Backend.MTU ${mtu}: must leave at least 68 bytes after the ${VXLAN_OVERHEAD}-byte VXLAN overhead`,
      'Backend.MTU',
      mtu,
    )
  }
  return {
    vni,
    port,
    gbp: backendOption(b, 'GBP', 'boolean') ?? false,
    learning: backendOption(b, 'Learning', 'boolean') ?? false,
    directRouting: backendOption(b, 'DirectRouting', 'boolean') ?? false,
    mtu: mtu === 0 ? undefined : mtu,
    txChecksumOffload: backendOption(b, 'TxChecksumOffload', 'boolean'),
  }
}

/** The device name for a VNI and family: `flannel.<VNI>` or `flannel-v6.<VNI>`. */
export function deviceName(vni: number, family: 'inet' | 'inet6'): string {
  return family === 'inet' ? `flannel.${vni}` : `flannel-v6.${vni}`
}
