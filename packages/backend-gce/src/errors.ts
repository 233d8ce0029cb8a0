import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/** What the Compute API answered when it refused a call. */
export interface GceApiErrorDetails {
  /** The API method, e.g. `routes.insert`. */
  readonly method: string
  /** The HTTP status, when there was an answer. */
  readonly httpStatus?: number | undefined
  /** The API's error reason (e.g. `notFound`, `forbidden`), when given. */
  readonly reason?: string | undefined
  /** The API's message, or what went wrong on the way. */
  readonly detail: string
}

/** A Compute API call failed (refused by the API, or no usable answer). */
export class GceApiError extends FlannelError {
  /** The API method. */
  readonly method: string
  /** The HTTP status, when the API answered. */
  readonly httpStatus: number | undefined
  /** The API's error reason, when given. */
  readonly reason: string | undefined

  constructor(
    details: GceApiErrorDetails,
    options: FlannelErrorOptions = {},
    code = 'GCE_API_ERROR',
  ) {
    super(
      code,
      `Compute ${details.method} failed${details.httpStatus === undefined ? '' : ` (HTTP ${details.httpStatus}${details.reason === undefined ? '' : ` ${details.reason}`})`}: ${details.detail}`,
      {
        retryable:
          details.httpStatus === undefined ||
          details.httpStatus === 429 ||
          details.httpStatus >= 500,
        ...options,
      },
    )
    this.method = details.method
    this.httpStatus = details.httpStatus
    this.reason = details.reason
  }
}

/**
 * The credentials were missing or refused: Application Default Credentials
 * found nothing, the token was rejected (401), or the account lacks the
 * permission or scope (403).
 */
export class GceAuthError extends GceApiError {
  constructor(details: GceApiErrorDetails, options: FlannelErrorOptions = {}) {
    super(details, { retryable: false, ...options }, 'GCE_AUTH_FAILED')
  }
}

/** A Compute operation finished with an error (flanneld: `error running operation: ...`). */
export class GceOperationError extends FlannelError {
  /** The operation's name. */
  readonly operation: string
  /** The operation's error codes, e.g. `RESOURCE_NOT_READY`. */
  readonly errorCodes: readonly string[]

  constructor(
    operation: string,
    errors: readonly { code?: string; message?: string }[],
    options: FlannelErrorOptions = {},
  ) {
    super(
      'GCE_OPERATION_FAILED',
      `error running operation: ${errors.map((e) => `${e.code ?? 'UNKNOWN'}: ${e.message ?? ''}`).join('; ')} (${operation})`,
      options,
    )
    this.operation = operation
    this.errorCodes = errors.map((e) => e.code ?? 'UNKNOWN')
  }
}

/** A Compute operation did not finish in time (flanneld: `timeout waiting for operation to finish`). */
export class GceOperationTimeoutError extends FlannelError {
  /** The operation's name. */
  readonly operation: string

  constructor(operation: string, timeoutMs: number) {
    super(
      'GCE_OPERATION_TIMEOUT',
      `timeout waiting for operation to finish (${operation}, ${timeoutMs} ms)`,
      {
        retryable: true,
      },
    )
    this.operation = operation
  }
}

/** The metadata server did not tell the project, zone, instance or network. */
export class GceMetadataError extends FlannelError {
  /** The metadata path asked for, e.g. `/project/project-id`. */
  readonly path: string

  constructor(path: string, message: string, options: FlannelErrorOptions = {}) {
    super('GCE_METADATA', message, options)
    this.path = path
  }
}

/** This instance could not be found through the Compute API. */
export class GceDiscoveryError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('GCE_DISCOVERY', message, options)
  }
}
