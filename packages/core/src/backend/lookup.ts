import { UnknownBackendError } from '../errors.js'
import type { BackendFactory } from './types.js'

/**
 * A backend factory, or a loader that imports it on first use (so that an
 * agent running vxlan never loads a cloud SDK).
 */
export type BackendEntry = BackendFactory | { readonly load: () => Promise<BackendFactory> }

/** Backend entries by lower-cased `Backend.Type`. */
export type BackendTable = Readonly<Record<string, BackendEntry>>

/**
 * Finds the factory for `type` (compared lower-cased, as flanneld does),
 * loading it if needed. Rejects with {@link UnknownBackendError} when absent.
 */
export async function lookupBackend(type: string, table: BackendTable): Promise<BackendFactory> {
  const name = type.toLowerCase()
  const entry = Object.prototype.hasOwnProperty.call(table, name) ? table[name] : undefined
  if (entry === undefined) throw new UnknownBackendError(name)
  return typeof entry === 'function' ? entry : entry.load()
}
