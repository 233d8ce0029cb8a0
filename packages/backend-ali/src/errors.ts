import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/** What Alibaba Cloud answered when it refused a call. */
export interface AliApiErrorDetails {
  /** The RPC action, e.g. `CreateRouteEntry`. */
  readonly action: string
  /** The API's error `Code` (e.g. `InvalidInstanceId.NotFound`); undefined when no answer was read. */
  readonly apiCode?: string | undefined
  /** The API's `RequestId`, for Alibaba support. */
  readonly requestId?: string | undefined
  /** The API's message, or what went wrong on the way. */
  readonly detail: string
}

// Codes the API gives for overload or its own faults; a later retry may work.
const RETRYABLE = /^(Throttling|ServiceUnavailable|InternalError|UnknownError)/

/** An Alibaba Cloud API call failed (refused by the API, or no usable answer). */
export class AliApiError extends FlannelError {
  /** The RPC action. */
  readonly action: string
  /** The API's error `Code`, when it answered with one. */
  readonly apiCode: string | undefined
  /** The API's `RequestId`, when it answered. */
  readonly requestId: string | undefined

  constructor(
    details: AliApiErrorDetails,
    options: FlannelErrorOptions = {},
    code = 'ALI_API_ERROR',
  ) {
    super(
      code,
      `Aliyun API ${details.action} failed${details.apiCode === undefined ? '' : ` (${details.apiCode})`}: ${details.detail}` +
        (details.requestId === undefined ? '' : ` [RequestId ${details.requestId}]`),
      { retryable: details.apiCode === undefined || RETRYABLE.test(details.apiCode), ...options },
    )
    this.action = details.action
    this.apiCode = details.apiCode
    this.requestId = details.requestId
  }
}

/**
 * Alibaba Cloud refused the credentials: unknown AccessKeyID
 * (`InvalidAccessKeyId.NotFound`), a signature made with the wrong
 * AccessKeySecret (`SignatureDoesNotMatch`), or a disabled key.
 */
export class AliAuthError extends AliApiError {
  constructor(details: AliApiErrorDetails, options: FlannelErrorOptions = {}) {
    super(details, { retryable: false, ...options }, 'ALI_AUTH_FAILED')
  }
}

/** The instance metadata server did not tell the region, instance or VPC. */
export class AliMetadataError extends FlannelError {
  /** The metadata path asked for, e.g. `/latest/meta-data/instance-id`. */
  readonly path: string

  constructor(path: string, message: string, options: FlannelErrorOptions = {}) {
    super('ALI_METADATA', message, options)
    this.path = path
  }
}

/** The VPC, its VRouter or its route table could not be found. */
export class AliDiscoveryError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('ALI_DISCOVERY', message, options)
  }
}

/** Route entries did not all become `Available` in time (flanneld: `Timeout`). */
export class AliRouteTimeoutError extends FlannelError {
  /** The route table waited on. */
  readonly routeTableId: string
  /** Destinations still not `Available` at the last look. */
  readonly pending: readonly string[]

  constructor(routeTableId: string, timeoutMs: number, pending: readonly string[]) {
    super(
      'ALI_ROUTE_TIMEOUT',
      `Timeout: route entries of ${routeTableId} not all Available after ${timeoutMs} ms (still pending: ${pending.join(', ') || 'none'})`,
      { retryable: true },
    )
    this.routeTableId = routeTableId
    this.pending = pending
  }
}
