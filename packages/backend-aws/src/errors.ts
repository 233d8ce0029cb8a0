import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/** What EC2 answered when it refused a call. */
export interface AwsApiErrorDetails {
  /** The EC2 operation, e.g. `CreateRoute`. */
  readonly operation: string
  /** EC2's error code (e.g. `InvalidRouteTableID.NotFound`); undefined when no answer was read. */
  readonly awsCode?: string | undefined
  /** The request id, for AWS support. */
  readonly requestId?: string | undefined
  /** The HTTP status, when there was an answer. */
  readonly httpStatus?: number | undefined
  /** EC2's message, or what went wrong on the way. */
  readonly detail: string
}

// Codes of overload or of EC2's own faults: a later retry may work.
const RETRYABLE =
  /^(RequestLimitExceeded|Throttling|ThrottlingException|InternalError|InternalFailure|ServiceUnavailable|Unavailable)$/

/** An EC2 API call failed (refused by EC2, or no usable answer). */
export class AwsApiError extends FlannelError {
  /** The EC2 operation. */
  readonly operation: string
  /** EC2's error code, when it answered with one. */
  readonly awsCode: string | undefined
  /** The request id, when EC2 answered. */
  readonly requestId: string | undefined
  /** The HTTP status, when EC2 answered. */
  readonly httpStatus: number | undefined

  constructor(
    details: AwsApiErrorDetails,
    options: FlannelErrorOptions = {},
    code = 'AWS_API_ERROR',
  ) {
    super(
      code,
      `EC2 ${details.operation} failed${details.awsCode === undefined ? '' : ` (${details.awsCode})`}: ${details.detail}` +
        (details.requestId === undefined ? '' : ` [RequestId ${details.requestId}]`),
      {
        retryable: details.awsCode === undefined || RETRYABLE.test(details.awsCode),
        ...options,
      },
    )
    this.operation = details.operation
    this.awsCode = details.awsCode
    this.requestId = details.requestId
    this.httpStatus = details.httpStatus
  }
}

/**
 * EC2 refused the credentials or the permission: unknown or wrong keys
 * (`AuthFailure`, `InvalidClientTokenId`, `SignatureDoesNotMatch`), an
 * expired session token, a missing IAM permission (`UnauthorizedOperation`),
 * or no credentials found at all by the SDK's default chain.
 */
export class AwsAuthError extends AwsApiError {
  constructor(details: AwsApiErrorDetails, options: FlannelErrorOptions = {}) {
    super(details, { retryable: false, ...options }, 'AWS_AUTH_FAILED')
  }
}

/** The instance metadata service did not tell the region or instance id. */
export class AwsMetadataError extends FlannelError {
  /** The metadata path asked for, e.g. `/latest/meta-data/instance-id`. */
  readonly path: string

  constructor(path: string, message: string, options: FlannelErrorOptions = {}) {
    super('AWS_METADATA', message, options)
    this.path = path
  }
}

/** What {@link AwsDiscoveryError} looked for. */
export type AwsDiscoveryTarget = 'instance' | 'network-interface' | 'route-table'

/** The instance, its network interface or a route table could not be found. */
export class AwsDiscoveryError extends FlannelError {
  /** What was looked for. */
  readonly what: AwsDiscoveryTarget
  /**
   * What it was looked for by: the instance id, the interface address, the
   * route table id (the first of several missing ones), or the VPC whose main
   * route table is missing.
   */
  readonly value: string

  constructor(
    what: AwsDiscoveryTarget,
    value: string,
    message: string,
    options: FlannelErrorOptions = {},
  ) {
    super('AWS_DISCOVERY', message, options)
    this.what = what
    this.value = value
  }
}
