import { FlannelError, defineBackend, type BackendFactory } from '@flannel/core'

/** Backend packages by `Backend.Type`, with the name of each package's factory. */
export const BACKEND_PACKAGES: Readonly<Record<string, string>> = {
  vxlan: '@flannel/backend-vxlan',
  'host-gw': '@flannel/backend-hostgw',
  udp: '@flannel/backend-udp',
  alloc: '@flannel/backend-alloc',
  'aws-vpc': '@flannel/backend-aws',
  gce: '@flannel/backend-gce',
  'ali-vpc': '@flannel/backend-ali',
}

/** The options-first factory each backend package exports, by `Backend.Type`. */
const FACTORY_EXPORTS: Readonly<Record<string, string>> = {
  vxlan: 'vxlan',
  'host-gw': 'hostGw',
  udp: 'udp',
  alloc: 'alloc',
  'aws-vpc': 'awsVpc',
  gce: 'gce',
  'ali-vpc': 'aliVpc',
}

/**
 * The package of a configured backend type could not be loaded: it is not
 * installed, or it does not export its factory. `message` names the type and
 * the package, e.g. `backend type "aws-vpc" needs the package
 * @flannel/backend-aws, which could not be loaded: ...`.
 */
export class BackendPackageError extends FlannelError {
  /** The backend type configured (`Backend.Type`). */
  readonly type: string
  /** The npm package that serves it. */
  readonly package: string

  constructor(type: string, pkg: string, reason: string, options: { cause?: unknown } = {}) {
    super(
      'BACKEND_UNAVAILABLE',
      `backend type "${type}" needs the package ${pkg}, which could not be loaded: ${reason}`,
      options,
    )
    this.type = type
    this.package = pkg
  }
}

/**
 * Imports a backend package and calls its factory with default options. The
 * name is a variable on purpose: neither the bundler nor the type
 * declarations pull the backend packages in, so a host running one backend
 * never loads the others (nor their cloud SDKs).
 */
async function loadFactory(
  type: string,
  pkg: string,
  name: string,
  importModule: () => Promise<object> = () => import(pkg),
): Promise<BackendFactory> {
  let mod: Record<string, unknown>
  try {
    mod = (await importModule()) as Record<string, unknown>
  } catch (error) {
    const code = (error as { code?: unknown }).code
    const reason =
      code === 'ERR_MODULE_NOT_FOUND' || code === 'MODULE_NOT_FOUND'
        ? `it is not installed (npm install ${pkg})`
        : error instanceof Error
          ? error.message
          : String(error)
    throw new BackendPackageError(type, pkg, reason, { cause: error })
  }
  const make = mod[name]
  if (typeof make !== 'function') {
    throw new BackendPackageError(type, pkg, `it does not export the factory ${name}()`)
  }
  return (make as () => BackendFactory)()
}

/** Where {@link lazyBackend} finds a backend: the package and the name of its factory export. */
export interface BackendSource {
  /** The npm package, e.g. `@flannel/backend-vxlan`. */
  readonly package: string
  /** Its options-first factory, e.g. `vxlan`; called without options. */
  readonly factory: string
}

/**
 * A factory for `type` that imports its package only when an agent creates
 * that backend, i.e. when the network config's `Backend.Type` names it. The
 * package is `BACKEND_PACKAGES[type]` unless `source` names another (a
 * backend package of your own).
 *
 * @throws BackendPackageError naming the type when no package serves it; and
 *   (from `create`) naming the package when it cannot be loaded or lacks the factory.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [lazyBackend('vxlan'), lazyBackend('aws-vpc')] })
 * ```
 */
export function lazyBackend(type: string, source?: BackendSource): BackendFactory {
  const pkg = source?.package ?? BACKEND_PACKAGES[type]
  const name = source?.factory ?? FACTORY_EXPORTS[type]
  if (pkg === undefined || name === undefined) {
    throw new BackendPackageError(type, '(none)', 'no package serves this type')
  }
  return defineBackend(type, async (ctx) => (await loadFactory(type, pkg, name)).create(ctx))
}

/**
 * A factory for one of {@link BACKEND_PACKAGES}' types whose package
 * `importModule` loads: the bundled command passes `import()`s with literal
 * names so that each backend becomes a chunk of its own. Errors as
 * {@link lazyBackend}. (Not exported from the package.)
 */
export function lazyBackendFrom(type: string, importModule: () => Promise<object>): BackendFactory {
  const pkg = BACKEND_PACKAGES[type]!
  const name = FACTORY_EXPORTS[type]!
  return defineBackend(type, async (ctx) =>
    (await loadFactory(type, pkg, name, importModule)).create(ctx),
  )
}

/**
 * Every backend the `flannel-agent` command can run, as a list for the
 * `Agent`; each package is imported only when its type is configured.
 */
export const BACKENDS: readonly BackendFactory[] = Object.keys(BACKEND_PACKAGES).map((type) =>
  lazyBackend(type),
)
