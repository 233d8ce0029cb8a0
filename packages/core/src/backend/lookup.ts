import { InvalidArgumentError, UnknownBackendError } from '../errors.js'
import type { Backend, BackendContext, BackendFactory, CreateBackend } from './types.js'

/**
 * An entry of the older {@link BackendTable}: a function creating the
 * backend, or a loader that imports one on first use.
 *
 * @deprecated Use {@link BackendFactory} values in a list; a factory's
 * `create` may be async and import its package itself.
 */
export type BackendEntry = CreateBackend | { readonly load: () => Promise<CreateBackend> }

/**
 * The older form of `AgentOptions.backends`: entries by lower-cased
 * `Backend.Type`, with nothing checking that a key matches its backend.
 *
 * @deprecated Pass a list of factories instead: `backends: [vxlan(), hostGw()]`.
 */
export type BackendTable = Readonly<Record<string, BackendEntry>>

/** What `AgentOptions.backends` takes: a list of factories (or, deprecated, a table by type). */
export type BackendList = readonly BackendFactory[]

/** A lower-case `Backend.Type`: letters, digits and `-`, starting with a letter. */
const TYPE_PATTERN = /^[a-z][a-z0-9-]*$/

/**
 * Makes a {@link BackendFactory} for a backend of your own: the type it
 * serves and how to create it (which may import the implementation lazily).
 * Backend packages build their options-first factories with it.
 *
 * @throws InvalidArgumentError (`type`) when `type` is not a lower-case name
 *   such as `vxlan` or `host-gw`.
 *
 * @example
 * ```ts
 * export const printer = (options: PrinterOptions = {}) =>
 *   defineBackend('printer', (ctx) => new PrinterBackend(ctx, options))
 * const agent = new Agent({ registry, backends: [printer(), vxlan()], extIface })
 * ```
 */
export function defineBackend(
  type: string,
  create: (ctx: BackendContext) => Backend | Promise<Backend>,
): BackendFactory {
  if (typeof type !== 'string' || !TYPE_PATTERN.test(type)) {
    throw new InvalidArgumentError(
      'type',
      type,
      'a backend type is lower-case letters, digits and "-" (as "vxlan", "host-gw")',
    )
  }
  if (typeof create !== 'function') {
    throw new InvalidArgumentError('create', create, 'expected a function creating the backend')
  }
  return Object.freeze({ type, create })
}

/**
 * The factories of a backend list by type, checked: every entry has a
 * `type` and a `create`, and no two claim one type (compared lower-cased,
 * as flanneld compares `Backend.Type`). A deprecated {@link BackendTable} is
 * turned into factories keyed as written.
 *
 * @throws InvalidArgumentError (`backends`) naming the entry or the type claimed twice.
 */
export function backendsByType(
  backends: BackendList | BackendTable,
): ReadonlyMap<string, BackendFactory> {
  const byType = new Map<string, BackendFactory>()
  if (!Array.isArray(backends)) {
    for (const [key, entry] of Object.entries(backends as BackendTable)) {
      const type = key.toLowerCase()
      byType.set(type, {
        type,
        create: (ctx) =>
          typeof entry === 'function' ? entry(ctx) : entry.load().then((f) => f(ctx)),
      })
    }
    return byType
  }
  backends.forEach((factory: unknown, i) => {
    const f = factory as Partial<BackendFactory> | null | undefined
    if (typeof f?.type !== 'string' || typeof f.create !== 'function') {
      throw new InvalidArgumentError(
        `backends[${i}]`,
        factory,
        'expected a backend factory such as vxlan() or hostGw() (an object with type and create)',
      )
    }
    const type = f.type.toLowerCase()
    if (byType.has(type)) {
      throw new InvalidArgumentError(
        'backends',
        type,
        `two backends claim the type "${type}" (entries ${[...byType.keys()].indexOf(type)} and ${i}); keep one`,
      )
    }
    byType.set(type, f as BackendFactory)
  })
  return byType
}

/**
 * Finds the factory for `type` (compared lower-cased, as flanneld does).
 *
 * @throws UnknownBackendError when no entry serves `type`.
 * @throws InvalidArgumentError when `backends` is malformed (see {@link backendsByType}).
 */
export function lookupBackend(
  type: string,
  backends: BackendList | BackendTable | ReadonlyMap<string, BackendFactory>,
): BackendFactory {
  const byType = backends instanceof Map ? backends : backendsByType(backends as BackendList)
  const name = type.toLowerCase()
  const factory = byType.get(name)
  if (factory === undefined) throw new UnknownBackendError(name)
  return factory
}
