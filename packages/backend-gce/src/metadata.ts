import { AbortError } from '@flannel/core'
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
  const timeout = AbortSignal.timeout(opts.timeoutMs)
  const signal = opts.signal === undefined ? timeout : AbortSignal.any([opts.signal, timeout])
  let res: Response
  try {
    res = await fetch(new URL(`/computeMetadata/v1${path}`, opts.endpoint), {
      headers: { 'Metadata-Flavor': 'Google' },
      signal,
    })
  } catch (err) {
    if (opts.signal?.aborted) throw new AbortError(undefined, { cause: opts.signal.reason })
    const why = timeout.aborted
      ? `no answer from ${opts.endpoint} within ${opts.timeoutMs} ms`
      : `${(err as Error).message}${(err as { cause?: Error }).cause ? ` (${(err as { cause: Error }).cause.message})` : ''}`
    throw new GceMetadataError(path, `${what}: ${why}`, { cause: err })
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
