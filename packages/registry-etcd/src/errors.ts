import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * etcd answered but refused the request for a reason retrying will not fix
 * (permission denied, wrong credentials, invalid request).
 */
export class EtcdRequestError extends FlannelError {
  /** What the registry was doing, e.g. `list leases`. */
  readonly operation: string

  constructor(operation: string, message: string, options: FlannelErrorOptions = {}) {
    super('ETCD_REQUEST_FAILED', `etcd refused ${operation}: ${message}`, options)
    this.operation = operation
  }
}
