import { InvalidArgumentError, silentLogger, type Logger } from '@flannel/core'

/** Default etcd prefix of flanneld (`--etcd-prefix`). */
export const DEFAULT_PREFIX = '/coreos.com/network'
/** flanneld's lease TTL: 24 h. */
export const DEFAULT_LEASE_TTL_SECONDS = 86_400
/** Default longest single attempt (connecting included). */
export const DEFAULT_DIAL_TIMEOUT_MS = 5_000
/** Default time a call may take, retries included, before it fails with `RegistryUnavailableError`. */
export const DEFAULT_REQUEST_TIMEOUT_MS = 10_000

/** PEM data as text or bytes. */
export type Pem = string | Uint8Array

/** Options of `new EtcdRegistry(...)`. */
export interface EtcdRegistryOptions {
  /** etcd client URLs, e.g. `http://127.0.0.1:2379` (an array, or a comma-separated string like flanneld's flag). */
  readonly endpoints: string | readonly string[]
  /** Key prefix (`--etcd-prefix`); default `/coreos.com/network`. */
  readonly prefix?: string
  /**
   * TLS material (PEM contents, not paths). `ca` verifies the server (system
   * roots when absent); `cert` and `key` together authenticate the client.
   */
  readonly tls?: { readonly ca?: Pem; readonly cert?: Pem; readonly key?: Pem }
  /** etcd user name and password. */
  readonly auth?: { readonly username: string; readonly password: string }
  /**
   * Longest single attempt in ms, connecting included (default 5000): a
   * request that neither connects nor answers by then is abandoned and
   * retried, within `requestTimeoutMs`.
   */
  readonly dialTimeoutMs?: number
  /** Budget of one registry call in ms, retries included (default 10000). */
  readonly requestTimeoutMs?: number
  /** TTL of the etcd lease attached to every lease write, in seconds (default 86400). */
  readonly leaseTtlSeconds?: number
  /** pino-compatible logger (default: silent). */
  readonly logger?: Logger
  /** Random source in [0, 1) for subnet picks and retry jitter (default `Math.random`). */
  readonly random?: () => number
}

/** Options after validation, with defaults applied. */
export interface ResolvedOptions {
  readonly endpoints: readonly string[]
  readonly prefix: string
  readonly tls: { readonly ca?: Buffer; readonly cert?: Buffer; readonly key?: Buffer } | undefined
  readonly auth: { readonly username: string; readonly password: string } | undefined
  readonly dialTimeoutMs: number
  readonly requestTimeoutMs: number
  readonly leaseTtlSeconds: number
  readonly logger: Logger
  readonly random: () => number
}

function positiveInteger(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(field, value, 'must be a positive integer')
  }
  return value
}

function pem(field: string, value: Pem | undefined): Buffer | undefined {
  if (value === undefined) return undefined
  if (typeof value === 'string') {
    if (!value.includes('-----BEGIN')) {
      throw new InvalidArgumentError(field, '<redacted>', 'must be PEM data (read the file first)')
    }
    return Buffer.from(value)
  }
  if (value instanceof Uint8Array) return Buffer.from(value)
  throw new InvalidArgumentError(field, typeof value, 'must be a string or Uint8Array of PEM data')
}

function endpointList(value: string | readonly string[]): string[] {
  const list = typeof value === 'string' ? value.split(',') : [...value]
  const endpoints = list.map((e) => (typeof e === 'string' ? e.trim() : e)).filter((e) => e !== '')
  if (endpoints.length === 0) {
    throw new InvalidArgumentError('endpoints', value, 'at least one etcd endpoint is needed')
  }
  for (const endpoint of endpoints) {
    if (typeof endpoint !== 'string') {
      throw new InvalidArgumentError('endpoints', endpoint, 'must be a URL string')
    }
    let url: URL
    try {
      url = new URL(endpoint)
    } catch {
      throw new InvalidArgumentError(
        'endpoints',
        endpoint,
        'not a URL (expected http(s)://host:port)',
      )
    }
    if (url.protocol !== 'http:' && url.protocol !== 'https:') {
      throw new InvalidArgumentError('endpoints', endpoint, 'scheme must be http or https')
    }
    if (url.port === '') {
      throw new InvalidArgumentError('endpoints', endpoint, 'a port is required')
    }
  }
  return endpoints
}

/** Validates options and applies defaults; throws `InvalidArgumentError` naming the option. */
export function resolveOptions(options: EtcdRegistryOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'must be an object')
  }
  const prefix = options.prefix ?? DEFAULT_PREFIX
  if (typeof prefix !== 'string') {
    throw new InvalidArgumentError('prefix', prefix, 'must be a string')
  }
  let tls: ResolvedOptions['tls']
  if (options.tls !== undefined) {
    const t = options.tls
    const cert = pem('tls.cert', t.cert)
    const key = pem('tls.key', t.key)
    if ((cert === undefined) !== (key === undefined)) {
      throw new InvalidArgumentError(
        cert === undefined ? 'tls.cert' : 'tls.key',
        undefined,
        'tls.cert and tls.key must be given together',
      )
    }
    const ca = pem('tls.ca', t.ca)
    tls = {
      ...(ca === undefined ? {} : { ca }),
      ...(cert === undefined ? {} : { cert }),
      ...(key === undefined ? {} : { key }),
    }
  }
  if (options.auth !== undefined) {
    const { username, password } = options.auth
    if (typeof username !== 'string' || username === '') {
      throw new InvalidArgumentError('auth.username', username, 'must be a non-empty string')
    }
    if (typeof password !== 'string') {
      throw new InvalidArgumentError('auth.password', '<redacted>', 'must be a string')
    }
  }
  if (options.random !== undefined && typeof options.random !== 'function') {
    throw new InvalidArgumentError('random', typeof options.random, 'must be a function')
  }
  return {
    endpoints: endpointList(options.endpoints),
    prefix,
    tls,
    auth: options.auth === undefined ? undefined : { ...options.auth },
    dialTimeoutMs: positiveInteger('dialTimeoutMs', options.dialTimeoutMs, DEFAULT_DIAL_TIMEOUT_MS),
    requestTimeoutMs: positiveInteger(
      'requestTimeoutMs',
      options.requestTimeoutMs,
      DEFAULT_REQUEST_TIMEOUT_MS,
    ),
    leaseTtlSeconds: positiveInteger(
      'leaseTtlSeconds',
      options.leaseTtlSeconds,
      DEFAULT_LEASE_TTL_SECONDS,
    ),
    logger: options.logger ?? silentLogger,
    random: options.random ?? Math.random,
  }
}
