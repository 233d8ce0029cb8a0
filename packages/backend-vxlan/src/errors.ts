import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * The vxlan device could not be prepared: its MAC is not the one published,
 * the lease lacks a subnet for an enabled family, or the external interface
 * has no address to use as the tunnel's local end.
 */
export class VxlanDeviceError extends FlannelError {
  /** The device, e.g. `flannel.1`. */
  readonly device: string

  constructor(device: string, message: string, options: FlannelErrorOptions = {}) {
    super('VXLAN_DEVICE', message, options)
    this.device = device
  }
}
