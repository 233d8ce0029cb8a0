import { ConfigError } from '../errors.js'
import { foldKey } from './gojson.js'

/** The JavaScript type {@link backendOption} returns for each kind. */
export interface BackendOptionKinds {
  /** A JSON string. */
  string: string
  /** Any finite JSON number. */
  number: number
  /** A JSON number without a fractional part (what a Go `int` field accepts). */
  integer: number
  /** `true` or `false`. */
  boolean: boolean
  /** A JSON object (not an array). */
  object: Readonly<Record<string, unknown>>
  /** A string or an array of strings, returned as an array. */
  strings: string[]
}

/** A kind accepted by {@link backendOption}. */
export type BackendOptionKind = keyof BackendOptionKinds

/**
 * Reads one option of the config's `Backend` object the way flannel's backends
 * decode theirs with Go's `encoding/json`: the key is matched
 * case-insensitively (`directRouting` and `DirectRouting` both work; when
 * several spellings are present the last one wins), and a JSON `null` counts
 * as absent.
 *
 * @param backend - `NetworkConfig.backend`.
 * @param name - the option's documented name, e.g. `VNI`; used in errors as `Backend.<name>`.
 * @param kind - the expected JSON type.
 * @returns the value, or `undefined` when the option is absent.
 * @throws ConfigError naming `Backend.<name>` and the value when it has the wrong type.
 *
 * @example
 * ```ts
 * const vni = backendOption(config.backend, 'VNI', 'integer') ?? 1
 * const port = backendOption(config.backend, 'Port', 'integer') ?? 0
 * ```
 */
export function backendOption<K extends BackendOptionKind>(
  backend: Readonly<Record<string, unknown>>,
  name: string,
  kind: K,
): BackendOptionKinds[K] | undefined {
  const folded = foldKey(name)
  let value: unknown
  for (const key of Object.keys(backend)) {
    if (key === name || foldKey(key) === folded) value = backend[key]
  }
  if (value === undefined || value === null) return undefined
  const field = `Backend.${name}`
  const wrong = (expected: string): never => {
    throw new ConfigError(`invalid ${field} ${describe(value)}: expected ${expected}`, field, value)
  }
  switch (kind) {
    case 'string':
      if (typeof value !== 'string') wrong('a string')
      break
    case 'number':
      if (typeof value !== 'number' || !Number.isFinite(value)) wrong('a number')
      break
    case 'integer':
      if (typeof value !== 'number' || !Number.isInteger(value)) wrong('an integer')
      break
    case 'boolean':
      if (typeof value !== 'boolean') wrong('true or false')
      break
    case 'object':
      if (typeof value !== 'object' || Array.isArray(value)) wrong('an object')
      break
    case 'strings':
      if (typeof value === 'string') return [value] as BackendOptionKinds[K]
      if (!Array.isArray(value) || !value.every((v) => typeof v === 'string')) {
        wrong('a string or an array of strings')
      }
      return [...(value as string[])] as BackendOptionKinds[K]
    default:
      throw new ConfigError(`unknown option kind ${String(kind)}`, field, value)
  }
  return value as BackendOptionKinds[K]
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}
