import { isFlannelError } from '@flannel/core'
import { describeError, fetchMetadata } from '@flannel/core/registry'
import { GceMetadataError } from './errors.js'

/** The metadata server's address. */
export const DEFAULT_METADATA_ENDPOINT = 'http://169.254.169.254'

/**
 * Reads `/computeMetadata/v1<path>` with `Metadata-Flavor: Google`. Unlike
 * flanneld, the HTTP status is checked, so a missing value is an error and
 * not an empty name.
 */
export async function readMetadata(
  path: string,
  what: string,
  opts: { endpoint: string; timeoutMs: number; signal?: AbortSignal | undefined },
): Promise<string> {
  let res: Response
  try {
    res = await fetchMetadata(new URL(`/computeMetadata/v1${path}`, opts.endpoint), {
      endpoint: opts.endpoint,
      timeoutMs: opts.timeoutMs,
      headers: { 'Metadata-Flavor': 'Google' },
      signal: opts.signal,
    })
  } catch (err) {
    if (isFlannelError(err, 'ABORTED')) throw err
    throw new GceMetadataError(path, `${what}: ${describeError(err)}`, { cause: err })
  }
  const text = (await res.text()).trim()
  if (res.status !== 200) {
    throw new GceMetadataError(path, `${what}: HTTP ${res.status} for ${path}`)
  }
  if (text === '') throw new GceMetadataError(path, `${what}: empty value at ${path}`)
  return text
}

/** The metadata server base URL: the option, else `GCE_METADATA_HOST` (as Google's libraries), else the default. */
export function metadataEndpoint(
  option: string | undefined,
  env: Readonly<Record<string, string | undefined>>,
): string {
  const value = option ?? env.GCE_METADATA_HOST ?? env.GCE_METADATA_IP
  if (value === undefined || value === '') return DEFAULT_METADATA_ENDPOINT
  return /^https?:\/\//.test(value) ? value : `http://${value}`
}
