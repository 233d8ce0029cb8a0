import { isFlannelError, throwIfAborted } from '@flannel/core'
import { describeError, fetchMetadata, sleep } from '@flannel/core/registry'
import { AliMetadataError } from './errors.js'

/** The metadata server every ECS instance reaches. */
export const DEFAULT_METADATA_ENDPOINT = 'http://100.100.100.200'

/** Options of {@link readMetadata}. */
export interface MetadataOptions {
  readonly endpoint: string
  /** How long to keep retrying when the server cannot be reached (flanneld: 5 s). */
  readonly retryMs: number
  readonly signal?: AbortSignal | undefined
}

const RETRY_DELAY_MS = 200
const MIN_ATTEMPTS = 5
const ATTEMPT_TIMEOUT_MS = 2000

/**
 * Reads one value (`region-id`, `instance-id`, `vpc-id`) from the instance
 * metadata server, as flanneld does: a non-200 answer fails at once; a
 * server that cannot be reached is retried every 200 ms for `retryMs` (at
 * least 5 attempts).
 */
export async function readMetadata(name: string, opts: MetadataOptions): Promise<string> {
  const path = `/latest/meta-data/${name}`
  const url = `${opts.endpoint.replace(/\/+$/, '')}${path}`
  const deadline = Date.now() + opts.retryMs
  let lastError: unknown
  for (let attempt = 1; ; attempt++) {
    throwIfAborted(opts.signal)
    let response: Response
    try {
      response = await fetchMetadata(url, {
        endpoint: opts.endpoint,
        timeoutMs: ATTEMPT_TIMEOUT_MS,
        signal: opts.signal,
      })
    } catch (err) {
      if (isFlannelError(err, 'ABORTED')) throw err
      lastError = err
      if (attempt >= MIN_ATTEMPTS && Date.now() >= deadline) {
        throw new AliMetadataError(
          path,
          `metadata server ${opts.endpoint} did not answer ${path} after ${attempt} attempts: ${describeError(lastError)}`,
          { cause: lastError, retryable: true },
        )
      }
      await sleep(RETRY_DELAY_MS, opts.signal)
      continue
    }
    const text = (await response.text()).trim()
    if (response.status !== 200) {
      throw new AliMetadataError(
        path,
        `metadata server answered ${path} with HTTP ${response.status}`,
      )
    }
    if (text === '')
      throw new AliMetadataError(path, `metadata server answered ${path} with an empty value`)
    return text
  }
}
