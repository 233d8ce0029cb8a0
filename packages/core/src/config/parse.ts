import { ConfigError } from '../errors.js'
import { Ip4Net, formatIp4, isIp4, parseIp4 } from '../ip/ip4.js'
import { Ip6Net, formatIp6, isIp6, parseIp6 } from '../ip/ip6.js'
import {
  GoJsonError,
  foldKey,
  goField,
  goKindWord,
  goValueFromPlain,
  goValueToPlain,
  parseGoJson,
  type GoValue,
} from './gojson.js'
import type { NetworkConfig } from './types.js'

const MOD4 = 2 ** 32
const MOD6 = 1n << 128n

/** The JSON fields of flanneld's `subnet.Config`, in declaration order. */
const CONFIG_FIELDS = [
  'EnableIPv4',
  'EnableIPv6',
  'EnableNFTables',
  'Network',
  'IPv6Network',
  'SubnetMin',
  'SubnetMax',
  'IPv6SubnetMin',
  'IPv6SubnetMax',
  'SubnetLen',
  'IPv6SubnetLen',
  'Backend',
] as const
type ConfigField = (typeof CONFIG_FIELDS)[number]
const FOLDED_FIELDS = new Map(CONFIG_FIELDS.map((name) => [foldKey(name), name]))

/** The field a JSON key assigns: exact name first, else a case-insensitive match. */
function matchField(key: string): ConfigField | undefined {
  return (CONFIG_FIELDS as readonly string[]).includes(key)
    ? (key as ConfigField)
    : FOLDED_FIELDS.get(foldKey(key))
}

/** The config fields as decoded, before defaults and validation (Go's `subnet.Config`). */
interface RawConfig {
  enableIPv4: boolean
  enableIPv6: boolean
  enableNFTables: boolean
  network: Ip4Net
  subnetLen: number
  subnetMin: number
  subnetMax: number
  ipv6Network: Ip6Net
  ipv6SubnetLen: number
  ipv6SubnetMin: bigint | undefined
  ipv6SubnetMax: bigint | undefined
  backend: GoValue | undefined
}

/** Options of {@link parseNetworkConfig}. */
export interface ParseNetworkConfigOptions {
  /**
   * Apply flanneld's `CheckNetworkConfig` (defaults and range checks of
   * `SubnetLen`, `SubnetMin`, `SubnetMax` and their IPv6 twins). Default
   * true, as in etcd mode. flanneld's kube mode (`--kube-subnet-mgr`) reads
   * net-conf.json without it (spec: kube.md section 2.3): the allocation
   * fields are decoded (a bad value is still an error) but not used, so they
   * come back as `subnetLen` 0 and no `subnetMin`/`subnetMax`, and a missing
   * `Network` leaves `network` unset instead of failing here.
   */
  readonly check?: boolean | undefined
}

/**
 * Parses and validates a flannel network configuration exactly as flanneld
 * does in etcd mode (spec: core.md sections 1.1 and 2): Go `encoding/json`
 * decoding (keys matched case-insensitively, unknown keys ignored, wrong JSON
 * types rejected), `Backend` absent meaning `udp`, `Backend.Type`
 * lower-cased, then the defaults and checks of sections 2.3 and 2.4 (unless
 * `options.check` is false, as in kube mode).
 *
 * @param json - the config as JSON text, or as an already-parsed object.
 * @returns the effective configuration with every default applied.
 * @throws ConfigError with flanneld's message text, the field at fault and its value.
 *
 * @example
 * ```ts
 * const config = parseNetworkConfig('{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}')
 * config.subnetLen // 24
 * config.subnetMin?.toString() // '10.5.1.0/24'
 * ```
 */
export function parseNetworkConfig(
  json: string | object,
  options: ParseNetworkConfigOptions = {},
): NetworkConfig {
  const raw = decodeConfig(json)
  const backendType = decodeBackendType(raw.backend)
  const backendPlain =
    raw.backend?.kind === 'object'
      ? (goValueToPlain(raw.backend) as Record<string, unknown>)
      : ({} as Record<string, unknown>)

  const check = options.check ?? true
  const v4 = raw.enableIPv4 ? (check ? checkIPv4(raw) : uncheckedIPv4(raw)) : undefined
  const v6 = raw.enableIPv6 ? (check ? checkIPv6(raw) : uncheckedIPv6(raw)) : undefined
  if (!raw.enableIPv4 && !raw.enableIPv6) {
    throw new ConfigError('none defined stack', 'EnableIPv4', false)
  }

  return Object.freeze({
    enableIPv4: raw.enableIPv4,
    enableIPv6: raw.enableIPv6,
    enableNFTables: raw.enableNFTables,
    network: v4?.network,
    subnetLen: v4?.subnetLen ?? 0,
    subnetMin: v4?.subnetMin,
    subnetMax: v4?.subnetMax,
    ipv6Network: v6?.network,
    ipv6SubnetLen: v6?.subnetLen ?? 0,
    ipv6SubnetMin: v6?.subnetMin,
    ipv6SubnetMax: v6?.subnetMax,
    backendType,
    backend: Object.freeze(backendPlain),
  })
}

// ---------------------------------------------------------------------------
// Decoding (Go's json.Unmarshal into subnet.Config)

function toGoValue(json: string | object): GoValue {
  try {
    return typeof json === 'string' ? parseGoJson(json) : goValueFromPlain(json)
  } catch (err) {
    if (err instanceof GoJsonError && err.depth !== undefined) {
      // Nesting too deep (Go's limit): name the top-level field and the depth refused.
      const field = err.key === undefined ? undefined : (matchField(err.key) ?? err.key)
      throw new ConfigError(err.message, field, err.depth, { cause: err })
    }
    if (err instanceof GoJsonError) {
      throw new ConfigError(err.message, undefined, json, { cause: err })
    }
    throw err
  }
}

/**
 * Decoding errors: Go stops at the first error returned by a field's own
 * `UnmarshalJSON` (the address types) but only remembers a plain type
 * mismatch and reports the first one after the whole object was read.
 */
class Decoder {
  savedError: ConfigError | undefined

  typeError(value: GoValue, field: string, goType: string): void {
    const what = value.kind === 'number' ? `number ${value.raw}` : goKindWord(value)
    this.savedError ??= new ConfigError(
      `json: cannot unmarshal ${what} into Go struct field Config.${field} of type ${goType}`,
      field,
      goValueToPlain(value),
    )
  }

  bool(value: GoValue | undefined, field: string, fallback: boolean): boolean {
    if (value === undefined || value.kind === 'null') return fallback
    if (value.kind === 'bool') return value.value
    this.typeError(value, field, 'bool')
    return fallback
  }

  uint(value: GoValue | undefined, field: string, current: number): number {
    if (value === undefined || value.kind === 'null') return current
    if (value.kind !== 'number') {
      this.typeError(value, field, 'uint')
      return current
    }
    if (!/^\d+$/.test(value.raw) || BigInt(value.raw) >= 1n << 64n) {
      // Go parses the literal text as an unsigned integer: `-1`, `24.0`, `1e2` all fail.
      this.savedError ??= new ConfigError(
        `json: cannot unmarshal number ${value.raw} into Go struct field Config.${field} of type uint`,
        field,
        Number(value.raw),
      )
      return current
    }
    return Number(value.raw)
  }
}

/** What a flannel address type's `UnmarshalJSON` sees: the raw text with quotes trimmed. */
function unquotedRaw(value: GoValue): string {
  return value.raw.replace(/^"+|"+$/g, '')
}

function cidrError(field: string, text: string): ConfigError {
  return new ConfigError(`invalid CIDR address: ${text}`, field, text)
}

function decodeIp4Net(value: GoValue | undefined, field: string): Ip4Net {
  if (value === undefined) return Ip4Net.EMPTY
  const text = unquotedRaw(value)
  const slash = text.indexOf('/')
  if (slash < 0 || !isIp4(text.slice(0, slash)) || !/^\d+$/.test(text.slice(slash + 1))) {
    throw cidrError(field, text)
  }
  const len = Number(text.slice(slash + 1))
  if (len > 32) throw cidrError(field, text)
  return Ip4Net.parse(`${text.slice(0, slash)}/${len}`)
}

function decodeIp6Net(value: GoValue | undefined, field: string): Ip6Net {
  if (value === undefined) return Ip6Net.EMPTY
  const text = unquotedRaw(value)
  const slash = text.indexOf('/')
  if (slash < 0 || !isIp6(text.slice(0, slash)) || !/^\d+$/.test(text.slice(slash + 1))) {
    throw cidrError(field, text)
  }
  const len = Number(text.slice(slash + 1))
  if (len > 128) throw cidrError(field, text)
  return Ip6Net.parse(`${text.slice(0, slash)}/${len}`)
}

// Message as flanneld v0.28.10 prints it (measured); v0.26.x capitalised it ("Invalid ...").
function decodeIp4(value: GoValue | undefined, field: string): number {
  if (value === undefined) return 0
  const text = unquotedRaw(value)
  if (!isIp4(text)) throw new ConfigError('invalid IP address format', field, text)
  return parseIp4(text)
}

function decodeIp6(
  value: GoValue | undefined,
  field: string,
  current: bigint | undefined,
): bigint | undefined {
  // The Go field is a pointer: JSON null sets it back to nil (unset).
  if (value === undefined) return current
  if (value.kind === 'null') return undefined
  const text = unquotedRaw(value)
  if (!isIp6(text)) throw new ConfigError('invalid IP address format', field, text)
  return parseIp6(text)
}

function decodeConfig(json: string | object): RawConfig {
  const doc = toGoValue(json)
  const defaults: RawConfig = {
    enableIPv4: true,
    enableIPv6: false,
    enableNFTables: false,
    network: Ip4Net.EMPTY,
    subnetLen: 0,
    subnetMin: 0,
    subnetMax: 0,
    ipv6Network: Ip6Net.EMPTY,
    ipv6SubnetLen: 0,
    ipv6SubnetMin: undefined,
    ipv6SubnetMax: undefined,
    backend: undefined,
  }
  if (doc.kind === 'null') return defaults
  if (doc.kind !== 'object') {
    throw new ConfigError(
      `json: cannot unmarshal ${goKindWord(doc)} into Go value of type subnet.Config`,
      undefined,
      goValueToPlain(doc),
    )
  }
  // Like Go, walk the keys in document order: each key assigns the field it
  // matches (exactly or case-insensitively), so the last variant wins and the
  // first bad address in the document is the error reported.
  const d = new Decoder()
  const config = defaults
  for (const [key, value] of doc.entries) {
    switch (matchField(key)) {
      case 'EnableIPv4':
        config.enableIPv4 = d.bool(value, 'EnableIPv4', config.enableIPv4)
        break
      case 'EnableIPv6':
        config.enableIPv6 = d.bool(value, 'EnableIPv6', config.enableIPv6)
        break
      case 'EnableNFTables':
        config.enableNFTables = d.bool(value, 'EnableNFTables', config.enableNFTables)
        break
      case 'Network':
        config.network = decodeIp4Net(value, 'Network')
        break
      case 'IPv6Network':
        config.ipv6Network = decodeIp6Net(value, 'IPv6Network')
        break
      case 'SubnetMin':
        config.subnetMin = decodeIp4(value, 'SubnetMin')
        break
      case 'SubnetMax':
        config.subnetMax = decodeIp4(value, 'SubnetMax')
        break
      case 'IPv6SubnetMin':
        config.ipv6SubnetMin = decodeIp6(value, 'IPv6SubnetMin', config.ipv6SubnetMin)
        break
      case 'IPv6SubnetMax':
        config.ipv6SubnetMax = decodeIp6(value, 'IPv6SubnetMax', config.ipv6SubnetMax)
        break
      case 'SubnetLen':
        config.subnetLen = d.uint(value, 'SubnetLen', config.subnetLen)
        break
      case 'IPv6SubnetLen':
        config.ipv6SubnetLen = d.uint(value, 'IPv6SubnetLen', config.ipv6SubnetLen)
        break
      case 'Backend':
        config.backend = value
        break
      default:
        break // unknown keys are ignored
    }
  }
  if (d.savedError) throw d.savedError
  return config
}

/** flanneld's `Backend.Type` rule: absent -> udp, otherwise `Type` lower-cased. */
function decodeBackendType(backend: GoValue | undefined): string {
  if (backend === undefined) return 'udp'
  const prefix = 'error decoding Backend property of config: '
  if (backend.kind === 'null') return ''
  if (backend.kind !== 'object') {
    throw new ConfigError(
      `${prefix}json: cannot unmarshal ${goKindWord(backend)} into Go value of type struct { Type string }`,
      'Backend',
      goValueToPlain(backend),
    )
  }
  const type = goField(backend, 'Type')
  if (type === undefined || type.kind === 'null') return ''
  if (type.kind !== 'string') {
    throw new ConfigError(
      `${prefix}json: cannot unmarshal ${goKindWord(type)} into Go struct field .Type of type string`,
      'Backend.Type',
      goValueToPlain(type),
    )
  }
  return type.value.toLowerCase()
}

// ---------------------------------------------------------------------------
// Defaults and validation (flanneld's CheckNetworkConfig)

interface FamilyResult<N> {
  network: N
  subnetLen: number
  subnetMin: N
  subnetMax: N
}

/** Kube mode: the network as written (unset when missing), nothing derived. */
function uncheckedIPv4(raw: RawConfig): Partial<FamilyResult<Ip4Net>> {
  return raw.network.isEmpty ? {} : { network: raw.network }
}

/** Kube mode, IPv6: the network as written (unset when missing), nothing derived. */
function uncheckedIPv6(raw: RawConfig): Partial<FamilyResult<Ip6Net>> {
  return raw.ipv6Network.isEmpty ? {} : { network: raw.ipv6Network }
}

function checkIPv4(raw: RawConfig): FamilyResult<Ip4Net> {
  const network = raw.network
  if (network.isEmpty) {
    throw new ConfigError(
      'please define a correct Network parameter in the flannel config',
      'Network',
      network.toString(),
    )
  }
  let subnetLen = raw.subnetLen
  if (subnetLen > 0) {
    if (subnetLen > 30)
      throw new ConfigError('SubnetLen must be less than /31', 'SubnetLen', subnetLen)
    if (subnetLen < network.prefixLength + 2) {
      throw new ConfigError(
        'network must be able to accommodate at least four subnets',
        'SubnetLen',
        subnetLen,
      )
    }
  } else {
    if (network.prefixLength > 28) {
      throw new ConfigError(
        'network is too small. Minimum useful network prefix is /28',
        'Network',
        network.toString(),
      )
    }
    subnetLen = network.prefixLength <= 22 ? 24 : network.prefixLength + 2
  }
  const size = 2 ** (32 - subnetLen)

  let min = raw.subnetMin
  if (min === 0) min = (network.ip + size) % MOD4
  else if (!network.contains(min)) {
    throw new ConfigError(
      'SubnetMin is not in the range of the Network',
      'SubnetMin',
      formatIp4(min),
    )
  }
  let max = raw.subnetMax
  if (max === 0) max = (network.next().ip - size + MOD4) % MOD4
  else if (!network.contains(max)) {
    throw new ConfigError(
      'SubnetMax is not in the range of the Network',
      'SubnetMax',
      formatIp4(max),
    )
  }
  if (min % size !== 0) {
    throw new ConfigError(
      `SubnetMin is not on a SubnetLen boundary: ${formatIp4(min)}`,
      'SubnetMin',
      formatIp4(min),
    )
  }
  if (max % size !== 0) {
    throw new ConfigError(
      `SubnetMax is not on a SubnetLen boundary: ${formatIp4(max)}`,
      'SubnetMax',
      formatIp4(max),
    )
  }
  return {
    network,
    subnetLen,
    subnetMin: new Ip4Net(min, subnetLen),
    subnetMax: new Ip4Net(max, subnetLen),
  }
}

function checkIPv6(raw: RawConfig): FamilyResult<Ip6Net> {
  const network = raw.ipv6Network
  if (network.isEmpty) {
    throw new ConfigError(
      'please define a correct IPv6Network parameter in the flannel config',
      'IPv6Network',
      network.toString(),
    )
  }
  let subnetLen = raw.ipv6SubnetLen
  if (subnetLen > 0) {
    if (subnetLen > 126) {
      throw new ConfigError('SubnetLen must be less than /127', 'IPv6SubnetLen', subnetLen)
    }
    if (subnetLen < network.prefixLength + 2) {
      throw new ConfigError(
        'network must be able to accommodate at least four subnets',
        'IPv6SubnetLen',
        subnetLen,
      )
    }
  } else {
    if (network.prefixLength > 124) {
      throw new ConfigError(
        'IPv6Network is too small. Minimum useful network prefix is /124',
        'IPv6Network',
        network.toString(),
      )
    }
    subnetLen = network.prefixLength <= 62 ? 64 : network.prefixLength + 2
  }
  const size = 1n << BigInt(128 - subnetLen)

  let min = raw.ipv6SubnetMin
  if (min === undefined) min = (network.ip + size) % MOD6
  else if (!network.contains(min)) {
    throw new ConfigError(
      'IPv6SubnetMin is not in the range of the IPv6Network',
      'IPv6SubnetMin',
      formatIp6(min),
    )
  }
  let max = raw.ipv6SubnetMax
  if (max === undefined) max = (network.next().ip - size + MOD6) % MOD6
  else if (!network.contains(max)) {
    throw new ConfigError(
      'IPv6SubnetMax is not in the range of the IPv6Network',
      'IPv6SubnetMax',
      formatIp6(max),
    )
  }
  if (min % size !== 0n) {
    throw new ConfigError(
      `IPv6SubnetMin is not on a SubnetLen boundary: ${formatIp6(min)}`,
      'IPv6SubnetMin',
      formatIp6(min),
    )
  }
  if (max % size !== 0n) {
    throw new ConfigError(
      `IPv6SubnetMax is not on a SubnetLen boundary: ${formatIp6(max)}`,
      'IPv6SubnetMax',
      formatIp6(max),
    )
  }
  return {
    network,
    subnetLen,
    subnetMin: new Ip6Net(min, subnetLen),
    subnetMax: new Ip6Net(max, subnetLen),
  }
}
