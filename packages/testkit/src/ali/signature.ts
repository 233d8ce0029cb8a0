import { createHmac } from 'node:crypto'

/** RFC 3986 percent-encoding as Alibaba's RPC signature v1 requires (`%20`, `%2A`, `~`). */
export function percentEncode(text: string): string {
  return encodeURIComponent(text).replace(
    /[!'()*]/g,
    (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`,
  )
}

/**
 * The string Alibaba signs for an RPC request (signature v1): the parameters
 * except `Signature`, sorted by name, percent-encoded as `k=v&...`, then
 * `METHOD&%2F&` + the percent-encoded result.
 */
export function stringToSign(method: string, params: ReadonlyMap<string, string>): string {
  const canonical = [...params.entries()]
    .filter(([k]) => k !== 'Signature')
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    .map(([k, v]) => `${percentEncode(k)}=${percentEncode(v)}`)
    .join('&')
  return `${method.toUpperCase()}&${percentEncode('/')}&${percentEncode(canonical)}`
}

/** HMAC-SHA1 of `text` with key `secret + '&'`, base64 (Alibaba's RPC signature v1). */
export function signRpc(text: string, secret: string): string {
  return createHmac('sha1', `${secret}&`).update(text).digest('base64')
}
