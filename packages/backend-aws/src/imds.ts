import { AbortError } from '@flannel/core'
import { AwsMetadataError } from './errors.js'

/** The instance metadata service's address. */
export const DEFAULT_METADATA_ENDPOINT = 'http://169.254.169.254'

const TOKEN_TTL_SECONDS = '21600'

/** Options of {@link InstanceMetadata}. */
export interface InstanceMetadataOptions {
  /** Base URL, default {@link DEFAULT_METADATA_ENDPOINT}. */
  readonly endpoint: string
  /** Timeout of one request. */
  readonly timeoutMs: number
}

/**
 * A reader of the EC2 instance metadata service, IMDSv2 first: one
 * `PUT /latest/api/token`, then GETs carrying the token. A service that does
 * not offer tokens (IMDSv1 only: 403/404/405 on the PUT) is read without one.
 */
export class InstanceMetadata {
  private token: Promise<string | undefined> | undefined

  constructor(private readonly options: InstanceMetadataOptions) {}

  /** Reads `/latest/meta-data/<path>`; `what` names the value in errors (flanneld's texts). */
  async get(path: string, what: string, signal?: AbortSignal): Promise<string> {
    const full = `/latest/meta-data/${path}`
    try {
      this.token ??= this.fetchToken(signal)
      const token = await this.token
      const res = await this.request(
        'GET',
        full,
        token === undefined ? {} : { 'x-aws-ec2-metadata-token': token },
        signal,
      )
      const text = await res.text()
      if (res.status !== 200) {
        throw new AwsMetadataError(full, `error getting ${what}: HTTP ${res.status} for ${full}`)
      }
      return text.trim()
    } catch (err) {
      if (err instanceof AwsMetadataError || err instanceof AbortError) throw err
      this.token = undefined
      throw new AwsMetadataError(full, `error getting ${what}: ${describe(err)}`, { cause: err })
    }
  }

  private async fetchToken(signal?: AbortSignal): Promise<string | undefined> {
    const res = await this.request(
      'PUT',
      '/latest/api/token',
      { 'x-aws-ec2-metadata-token-ttl-seconds': TOKEN_TTL_SECONDS },
      signal,
    )
    const text = await res.text()
    if (res.status === 200) return text.trim()
    if (res.status === 403 || res.status === 404 || res.status === 405) return undefined
    throw new Error(`HTTP ${res.status} for PUT /latest/api/token`)
  }

  private async request(
    method: string,
    path: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Response> {
    const timeout = AbortSignal.timeout(this.options.timeoutMs)
    const combined = signal === undefined ? timeout : AbortSignal.any([signal, timeout])
    try {
      return await fetch(new URL(path, this.options.endpoint), {
        method,
        headers,
        signal: combined,
      })
    } catch (err) {
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
      if (timeout.aborted)
        throw new Error(
          `no answer from ${this.options.endpoint} within ${this.options.timeoutMs} ms`,
        )
      throw err
    }
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) {
    const cause = (err as { cause?: unknown }).cause
    return cause instanceof Error ? `${err.message} (${cause.message})` : err.message
  }
  return String(err)
}
