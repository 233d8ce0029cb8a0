import { Agent as HttpAgent } from 'node:http'
import { Agent as HttpsAgent } from 'node:https'
import { AbortError, throwIfAborted } from '@flannel/core'
import { AliApiError, AliAuthError } from './errors.js'

/**
 * The part of `@alicloud/pop-core`'s `RPCClient` the backend uses. Pass your
 * own (e.g. a preconfigured client) through `AliVpcOptions.client`.
 */
export interface AliRpcClient {
  request<T = unknown>(
    action: string,
    params: Record<string, string>,
    options?: Record<string, unknown>,
  ): Promise<T>
}

/** Settings for the lazily created SDK client. */
export interface AliClientSettings {
  readonly endpoint: string
  readonly apiVersion: string
  readonly accessKeyId: string
  readonly accessKeySecret: string
}

type RpcClientConstructor = new (config: {
  endpoint: string
  apiVersion: string
  accessKeyId: string
  accessKeySecret: string
}) => AliRpcClient

/** Imports `@alicloud/pop-core` on first use only, so other backends never load it. */
export async function createRpcClient(settings: AliClientSettings): Promise<AliRpcClient> {
  const mod = (await import('@alicloud/pop-core')) as unknown as {
    default?: RpcClientConstructor
  } & RpcClientConstructor
  const RPCClient = mod.default ?? mod
  return new RPCClient({
    endpoint: settings.endpoint,
    apiVersion: settings.apiVersion,
    accessKeyId: settings.accessKeyId,
    accessKeySecret: settings.accessKeySecret,
  })
}

// Answers that mean the key pair itself was refused.
const AUTH_CODES = new Set([
  'SignatureDoesNotMatch',
  'IncompleteSignature',
  'InvalidAccessKeyId.NotFound',
  'InvalidAccessKeyId.Inactive',
  'InvalidAccessKeyId',
])

/**
 * Calls RPC actions through the SDK client with a per-request timeout, the
 * caller's AbortSignal, no keep-alive sockets left behind, and errors turned
 * into typed ones that never carry the request URL (it holds the AccessKeyId
 * and signature).
 */
export class AliApi {
  private client: Promise<AliRpcClient> | undefined
  private readonly agent: HttpAgent

  constructor(
    private readonly connect: () => Promise<AliRpcClient>,
    endpoint: string,
    private readonly timeoutMs: number,
  ) {
    this.agent = endpoint.startsWith('https:')
      ? new HttpsAgent({ keepAlive: false })
      : new HttpAgent({ keepAlive: false })
  }

  /** Calls `action`; empty parameters are left out, as flanneld's client did. */
  async call<T>(
    action: string,
    params: Record<string, string | undefined>,
    signal?: AbortSignal,
  ): Promise<T> {
    throwIfAborted(signal)
    this.client ??= this.connect()
    let client: AliRpcClient
    try {
      client = await this.client
    } catch (err) {
      this.client = undefined
      throw err
    }
    const query: Record<string, string> = {}
    for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== '') query[k] = v
    try {
      return await client.request<T>(action, query, {
        method: 'GET',
        timeout: this.timeoutMs,
        agent: this.agent,
        formatParams: false,
        // httpx hands these options to http.request, which honours `signal`.
        beforeRequest: (o: Record<string, unknown>) =>
          signal === undefined ? o : { ...o, signal },
      })
    } catch (err) {
      if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
      throw toAliError(action, err)
    }
  }

  /** Closes sockets. */
  close(): void {
    this.agent.destroy()
  }
}

/** Turns an SDK failure into an {@link AliApiError} / {@link AliAuthError} without the request URL. */
export function toAliError(action: string, err: unknown): AliApiError {
  const data = (err as { data?: unknown }).data
  if (
    typeof data === 'object' &&
    data !== null &&
    typeof (data as { Code?: unknown }).Code === 'string'
  ) {
    const body = data as { Code: string; Message?: unknown; RequestId?: unknown }
    const message = typeof body.Message === 'string' ? body.Message : ''
    const details = {
      action,
      apiCode: body.Code,
      requestId: typeof body.RequestId === 'string' ? body.RequestId : undefined,
      // The signature mismatch text goes on to echo the string to sign; the first sentence says it all.
      detail: message.replace(/\s*server string to sign is:.*$/s, ''),
    }
    return AUTH_CODES.has(body.Code) ? new AliAuthError(details) : new AliApiError(details)
  }
  const message = err instanceof Error ? err.message : String(err)
  return new AliApiError({ action, detail: scrubUrls(message) })
}

/** Removes query strings from URLs in a message (they carry AccessKeyId and Signature). */
function scrubUrls(text: string): string {
  return text.replace(/(https?:\/\/[^\s?]+)\?\S*/g, '$1')
}
