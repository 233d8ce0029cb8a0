import { InvalidArgumentError } from '../errors.js'
import { formatIp4, isIp4, parseIp4 } from '../ip/ip4.js'
import { formatIp6, isIp6, parseIp6 } from '../ip/ip6.js'
import {
  GoJsonError,
  foldKey,
  goCompact,
  goKindWord,
  goValueToPlain,
  parseGoJson,
} from '../config/gojson.js'
import type { GoValue } from '../config/gojson.js'
import type { LeaseAttrs } from './types.js'

/**
 * Encodes lease attributes as the exact bytes flanneld stores as a lease's
 * value (spec: core.md section 3): compact JSON with the keys `PublicIP`,
 * `PublicIPv6` (JSON `null` when unset), `BackendType`, `BackendData`,
 * `BackendV6Data` in that order; the last three are left out when empty.
 * `backendData` / `backendV6Data` are embedded as JSON values (a `null` value
 * is written as `null`, as flanneld re-writes a stored `null`).
 *
 * @example
 * ```ts
 * encodeLeaseAttrs({ publicIP: '192.0.2.11', backendType: 'host-gw' })
 * // '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"host-gw"}'
 * ```
 * @throws InvalidArgumentError when `publicIP` / `publicIPv6` is not an address
 * of its family, or backend data cannot be written as JSON.
 */
export function encodeLeaseAttrs(attrs: LeaseAttrs): string {
  if (!isIp4(attrs.publicIP)) {
    throw new InvalidArgumentError('publicIP', attrs.publicIP, 'not an IPv4 address')
  }
  let out = `{"PublicIP":"${formatIp4(parseIp4(attrs.publicIP))}"`
  const v6 = attrs.publicIPv6
  if (v6 === undefined || v6 === '') out += ',"PublicIPv6":null'
  else if (!isIp6(v6)) throw new InvalidArgumentError('publicIPv6', v6, 'not an IPv6 address')
  else out += `,"PublicIPv6":"${formatIp6(parseIp6(v6))}"`
  if (attrs.backendType !== undefined && attrs.backendType !== '') {
    out += `,"BackendType":${goCompact(attrs.backendType)}`
  }
  if (attrs.backendData !== undefined) {
    out += `,"BackendData":${compactData('backendData', attrs.backendData)}`
  }
  if (attrs.backendV6Data !== undefined) {
    out += `,"BackendV6Data":${compactData('backendV6Data', attrs.backendV6Data)}`
  }
  return `${out}}`
}

function compactData(field: string, value: unknown): string {
  try {
    return goCompact(value)
  } catch (err) {
    throw new InvalidArgumentError(field, String(value), 'cannot be written as JSON', {
      cause: err,
    })
  }
}

const LEASE_FIELDS = ['PublicIP', 'PublicIPv6', 'BackendType', 'BackendData', 'BackendV6Data']

/**
 * Decodes a stored lease value the way flanneld reads it (Go `encoding/json`:
 * keys matched case-insensitively, unknown keys ignored). A missing `PublicIP`
 * reads as `0.0.0.0`, like flanneld; addresses come back in canonical text.
 *
 * @throws InvalidArgumentError naming the field and value when the text is not
 * a JSON object, an address does not parse, or a field has the wrong JSON type.
 */
export function decodeLeaseAttrs(json: string): LeaseAttrs {
  let doc: GoValue
  try {
    doc = parseGoJson(json)
  } catch (err) {
    if (err instanceof GoJsonError) {
      throw new InvalidArgumentError('lease value', json, err.message, { cause: err })
    }
    throw err
  }
  if (doc.kind !== 'object') {
    throw new InvalidArgumentError(
      'lease value',
      json,
      `json: cannot unmarshal ${goKindWord(doc)} into Go value of type lease.LeaseAttrs`,
    )
  }
  let publicIP = '0.0.0.0'
  let publicIPv6: string | undefined
  let backendType: string | undefined
  let backendData: unknown
  let backendV6Data: unknown
  const folded = new Map(LEASE_FIELDS.map((f) => [foldKey(f), f]))
  for (const [key, value] of doc.entries) {
    const field = LEASE_FIELDS.includes(key) ? key : folded.get(foldKey(key))
    switch (field) {
      case 'PublicIP': {
        const text = unquoted(value)
        if (!isIp4(text))
          throw new InvalidArgumentError('PublicIP', text, 'invalid IP address format')
        publicIP = text
        break
      }
      case 'PublicIPv6': {
        if (value.kind === 'null') {
          publicIPv6 = undefined
          break
        }
        const text = unquoted(value)
        if (!isIp6(text)) {
          throw new InvalidArgumentError('PublicIPv6', text, 'invalid IP address format')
        }
        publicIPv6 = formatIp6(parseIp6(text))
        break
      }
      case 'BackendType':
        if (value.kind === 'string') backendType = value.value
        else if (value.kind !== 'null') {
          throw new InvalidArgumentError(
            'BackendType',
            goValueToPlain(value),
            `json: cannot unmarshal ${goKindWord(value)} into Go struct field LeaseAttrs.BackendType of type string`,
          )
        }
        break
      case 'BackendData':
        backendData = goValueToPlain(value)
        break
      case 'BackendV6Data':
        backendV6Data = goValueToPlain(value)
        break
      default:
        break // unknown keys are ignored
    }
  }
  const attrs: { -readonly [K in keyof LeaseAttrs]: LeaseAttrs[K] } = { publicIP }
  if (publicIPv6 !== undefined) attrs.publicIPv6 = publicIPv6
  if (backendType !== undefined && backendType !== '') attrs.backendType = backendType
  if (backendData !== undefined) attrs.backendData = backendData
  if (backendV6Data !== undefined) attrs.backendV6Data = backendV6Data
  return attrs
}

/** The text an address field's Go `UnmarshalJSON` sees: the raw value with quotes trimmed. */
function unquoted(value: GoValue): string {
  return value.raw.replace(/^"+|"+$/g, '')
}

/**
 * The bytes flanneld writes for a lease's backend data where it stores it
 * alone (kube mode's `backend-data` / `backend-v6-data` annotations, spec:
 * kube.md section 3.3): the data as compact Go JSON, or `null` when there is
 * none (`json.RawMessage.MarshalJSON` of nil).
 *
 * @example
 * ```ts
 * encodeBackendData({ VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' }) // '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}'
 * encodeBackendData(undefined) // 'null'
 * ```
 * @throws InvalidArgumentError (naming `field`) when the value cannot be written as JSON.
 */
export function encodeBackendData(value: unknown, field = 'backendData'): string {
  return value === undefined ? 'null' : compactData(field, value)
}

/**
 * Reads backend data stored as JSON text (a peer's `backend-data`
 * annotation) into a plain value, as a Go `json.RawMessage` would carry it.
 * An empty text or `null` gives `undefined`, as does text that is not JSON
 * (flanneld keeps such bytes; its backends then fail to decode them, as ours
 * fail on `undefined`).
 *
 * @example
 * ```ts
 * decodeBackendData('{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}') // { VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' }
 * ```
 */
export function decodeBackendData(text: string | undefined): unknown {
  if (text === undefined || text.trim() === '') return undefined
  try {
    const value = goValueToPlain(parseGoJson(text))
    return value === null ? undefined : value
  } catch (err) {
    if (err instanceof GoJsonError) return undefined
    throw err
  }
}
