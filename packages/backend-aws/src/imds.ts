import { AbortError } from '@flannel/core'
import { describeError, fetchMetadata } from '@flannel/core/registry'
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
      throw new AwsMetadataError(full, `error getting ${what}: ${describeError(err)}`, {
        cause: err,
      })
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

  private request(
    method: string,
    path: string,
    headers: Record<string, string>,
    signal?: AbortSignal,
  ): Promise<Response> {
    return fetchMetadata(new URL(path, this.options.endpoint), {
      endpoint: this.options.endpoint,
      timeoutMs: this.options.timeoutMs,
      method,
      headers,
      signal,
    })
  }
}
