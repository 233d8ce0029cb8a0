import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * The native part of the udp backend could not be loaded (not built, built
 * for another Node ABI, or not Linux). The message says how to build it.
 */
export class UdpNativeUnavailableError extends FlannelError {
  /** Where the addon was looked for. */
  readonly path: string

  constructor(path: string, options: FlannelErrorOptions = {}) {
    super(
      'UDP_NATIVE_UNAVAILABLE',
      `the udp backend's native addon cannot be loaded from ${path}: ` +
        'build it with `pnpm --filter @flannel/backend-udp run build:native` ' +
        '(needs Linux, python3, make, a C compiler and the Node headers)' +
        (options.cause instanceof Error ? ` (${options.cause.message})` : ''),
      options,
    )
    this.path = path
  }
}

/**
 * Setting up the TUN device, the UDP socket or the forwarding loop failed.
 * `errno` is the kernel's error name when there is one (`EPERM`, `EBUSY`,
 * `EADDRINUSE`, ...).
 */
export class UdpDatapathError extends FlannelError {
  /** What was being done, e.g. `open TUN flannel%d`. */
  readonly step: string
  /** The kernel's error name, when known. */
  readonly errno: string | undefined

  constructor(
    step: string,
    errno: string | undefined,
    message: string,
    options: FlannelErrorOptions = {},
  ) {
    super('UDP_DATAPATH_FAILED', `${step}: ${message}`, options)
    this.step = step
    this.errno = errno
  }
}
