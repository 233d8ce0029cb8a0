import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * host-gw cannot run because the address it would publish is not an address
 * of the external interface (for example a NAT public IP): peers could not
 * route to it directly. The message is flanneld's when `--public-ip` differs
 * from the interface address.
 */
export class PublicIpNotLocalError extends FlannelError {
  /** The address that would be published. */
  readonly publicIP: string
  /** The external interface. */
  readonly iface: string

  constructor(
    publicIP: string,
    iface: string,
    message?: string,
    options: FlannelErrorOptions = {},
  ) {
    super(
      'HOSTGW_PUBLIC_IP_NOT_LOCAL',
      message ??
        "your PublicIP differs from interface IP, meaning that probably you're on a NAT, which is not supported by host-gw backend",
      options,
    )
    this.publicIP = publicIP
    this.iface = iface
  }
}
