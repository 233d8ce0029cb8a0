/**
 * Errors of the @flannel packages.
 *
 * Every error carries a stable string `code`. Use {@link isFlannelError} rather
 * than `instanceof`: a program can end up with two copies of this package, and
 * `instanceof` fails across copies while the brand check does not.
 */

const BRAND = Symbol.for('@flannel/core/error')

/** Options shared by every {@link FlannelError}. */
export interface FlannelErrorOptions {
  /** The underlying error, if any. */
  cause?: unknown
  /** Whether repeating the same call later may succeed. Defaults to false. */
  retryable?: boolean
}

/** Base class of every error thrown by the @flannel packages. */
export class FlannelError extends Error {
  /** Stable machine-readable code, e.g. `CONFIG_INVALID`. */
  readonly code: string
  /** Whether repeating the same call later may succeed. */
  readonly retryable: boolean
  /** @internal brand used by {@link isFlannelError}. */
  readonly [BRAND] = true

  constructor(code: string, message: string, options: FlannelErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause })
    this.name = new.target.name
    this.code = code
    this.retryable = options.retryable ?? false
  }
}

/**
 * True when `value` is an error of the @flannel packages (of any copy of this
 * package). With `code`, also checks the code.
 */
export function isFlannelError(value: unknown, code?: string): value is FlannelError {
  if (typeof value !== 'object' || value === null) return false
  if ((value as Record<symbol, unknown>)[BRAND] !== true) return false
  return code === undefined || (value as FlannelError).code === code
}

/** A network configuration was rejected. `message` is flanneld's text. */
export class ConfigError extends FlannelError {
  /** The config field at fault (e.g. `SubnetLen`), when one is. */
  readonly field: string | undefined
  /** The offending value, when there is one. */
  readonly value: unknown

  constructor(message: string, field?: string, value?: unknown, options: FlannelErrorOptions = {}) {
    super('CONFIG_INVALID', message, options)
    this.field = field
    this.value = value
  }
}

/** An argument or option of a public API was invalid. */
export class InvalidArgumentError extends FlannelError {
  /** The argument or option at fault. */
  readonly field: string
  /** The offending value. */
  readonly value: unknown

  constructor(field: string, value: unknown, reason: string, options: FlannelErrorOptions = {}) {
    super('INVALID_ARGUMENT', `invalid ${field} ${formatValue(value)}: ${reason}`, options)
    this.field = field
    this.value = value
  }
}

/** No free subnet is left in SubnetMin..SubnetMax (flanneld: `out of subnets`). */
export class SubnetExhaustedError extends FlannelError {
  constructor(message = 'out of subnets', options: FlannelErrorOptions = {}) {
    super('SUBNET_EXHAUSTED', message, options)
  }
}

/** A lease could not be created because another host holds the subnet. */
export class LeaseConflictError extends FlannelError {
  constructor(message = 'subnet already exists', options: FlannelErrorOptions = {}) {
    super('LEASE_CONFLICT', message, { retryable: true, ...options })
  }
}

/** The lease to renew or watch no longer exists (deleted or expired). */
export class LeaseNotFoundError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('LEASE_NOT_FOUND', message, options)
  }
}

/** This host's own lease was removed from the registry while the agent ran. */
export class LeaseRevokedError extends FlannelError {
  constructor(message = 'Lease has been revoked', options: FlannelErrorOptions = {}) {
    super('LEASE_REVOKED', message, options)
  }
}

/**
 * After a registry wipe (lease and network config gone) the agent could not
 * take its subnet back: the restored config differs from the one in use, or
 * another host holds the subnet now. `message` is `cannot take subnet <subnet>
 * back after the registry was wiped: <reason>`.
 */
export class LeaseRecoveryError extends FlannelError {
  /** The subnet the host held before the wipe. */
  readonly subnet: string

  constructor(subnet: { toString(): string }, reason: string, options: FlannelErrorOptions = {}) {
    super(
      'LEASE_NOT_RECOVERED',
      `cannot take subnet ${subnet.toString()} back after the registry was wiped: ${reason}`,
      options,
    )
    this.subnet = subnet.toString()
  }
}

/** The registry has no network configuration yet. */
export class ConfigNotFoundError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('CONFIG_NOT_FOUND', message, { retryable: true, ...options })
  }
}

/** The registry's backing store could not be reached in time. */
export class RegistryUnavailableError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('REGISTRY_UNAVAILABLE', message, { retryable: true, ...options })
  }
}

/** No backend is registered for the config's `Backend.Type`. */
export class UnknownBackendError extends FlannelError {
  /** The lower-cased type that was looked up. */
  readonly type: string

  constructor(type: string, options: FlannelErrorOptions = {}) {
    super('UNKNOWN_BACKEND', `unknown backend type: ${type}`, options)
    this.type = type
  }
}

/**
 * subnet.env could not be written (after the agent's retries). `message` is
 * `Failed to write subnet file <path>: <reason>`.
 */
export class SubnetFileError extends FlannelError {
  /** The subnet.env path (`--subnet-file`). */
  readonly path: string

  constructor(path: string, reason: string, options: FlannelErrorOptions = {}) {
    super('SUBNET_FILE', `Failed to write subnet file ${path}: ${reason}`, options)
    this.path = path
  }
}

/** A cloud route table (or route quota) is full. */
export class RouteLimitError extends FlannelError {
  /** The route table (or project) that is full. */
  readonly table: string
  /** The number of routes it holds (or the quota), when known. */
  readonly count: number | undefined

  constructor(
    table: string,
    count: number | undefined,
    message?: string,
    options: FlannelErrorOptions = {},
  ) {
    super(
      'ROUTE_LIMIT',
      message ??
        `route limit reached in ${table}${count === undefined ? '' : ` (${count} routes)`}`,
      options,
    )
    this.table = table
    this.count = count
  }
}

/** The operation was aborted through its AbortSignal. */
export class AbortError extends FlannelError {
  constructor(message = 'The operation was aborted', options: FlannelErrorOptions = {}) {
    super('ABORTED', message, options)
    this.name = 'AbortError'
  }
}

/** Throws an {@link AbortError} (carrying the signal's reason) when `signal` is aborted. */
export function throwIfAborted(signal: AbortSignal | undefined): void {
  if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value)
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
