import { constants } from 'node:os'
import { FlannelError, isFlannelError, type FlannelErrorOptions } from '@flannel/core'

/** Errno names whose failures may go away when the same call is repeated later. */
const RETRYABLE = new Set(['EBUSY', 'EAGAIN', 'ENOBUFS', 'EINTR', 'ETIMEDOUT'])

/**
 * A request to the kernel's network stack failed. `errno` is the errno name
 * the kernel returned (`EEXIST`, `ENOENT`, ...), `errnoNumber` its number on
 * Linux, `operation` what was attempted (e.g. `replaceRoute 10.244.2.0/24`).
 */
export class NetlinkError extends FlannelError {
  /** Errno name, e.g. `EEXIST`; `EUNKNOWN` when the failure carried none. */
  readonly errno: string
  /** Errno number on Linux (e.g. 17 for `EEXIST`); 0 when unknown. */
  readonly errnoNumber: number
  /** The operation that failed, with its main argument. */
  readonly operation: string

  constructor(
    operation: string,
    errno: string,
    options: FlannelErrorOptions & { detail?: string } = {},
  ) {
    const { detail, ...rest } = options
    super('NETLINK_ERROR', `${operation}: ${errno}${detail ? ` (${detail})` : ''}`, {
      retryable: RETRYABLE.has(errno),
      ...rest,
    })
    this.errno = errno
    this.errnoNumber = errnoNumber(errno)
    this.operation = operation
  }
}

/** True when `value` is a {@link NetlinkError} (of any copy of this package), optionally with this errno name. */
export function isNetlinkError(value: unknown, errno?: string): value is NetlinkError {
  if (!isFlannelError(value, 'NETLINK_ERROR')) return false
  return errno === undefined || (value as NetlinkError).errno === errno
}

/** The Linux errno number of an errno name, 0 when unknown. */
export function errnoNumber(name: string): number {
  return (constants.errno as Record<string, number | undefined>)[name] ?? 0
}

/**
 * Turns whatever the `netlink` package threw into a {@link NetlinkError}. The
 * package rejects with plain `Error("Request rejected: EEXIST")` (no code), so
 * the errno name is read from the message.
 */
export function toNetlinkError(operation: string, error: unknown): NetlinkError {
  if (isNetlinkError(error)) return error
  const message = error instanceof Error ? error.message : String(error)
  const errorCode = (error as { code?: unknown } | null)?.code
  const fromCode =
    typeof errorCode === 'string' && /^E[A-Z0-9]+$/.test(errorCode) ? errorCode : undefined
  const fromMessage = /\b(E[A-Z0-9]{2,})\b/.exec(message)?.[1]
  const errno = fromCode ?? fromMessage ?? 'EUNKNOWN'
  return new NetlinkError(operation, errno, {
    cause: error,
    ...(errno === 'EUNKNOWN' ? { detail: message } : {}),
  })
}
