import { defineBackend, type BackendFactory } from '@flannel/core'
import {
  BACKEND_PACKAGES,
  BackendPackageError,
  lazyBackend,
  type BackendSource,
} from './backends.js'

/**
 * The backend list of the bundled `flannel-agent` (dist/cli.js; see
 * tsup.config.ts): the same list as `./backends.js`, with each package
 * imported by a literal name so that the bundler makes every backend a chunk
 * of its own, loaded on first use and sharing the bundle's one copy of
 * @flannel/core and rxjs.
 */
const IMPORTS: Readonly<Record<string, () => Promise<() => BackendFactory>>> = {
  vxlan: async () => (await import('@flannel/backend-vxlan')).vxlan,
  'host-gw': async () => (await import('@flannel/backend-hostgw')).hostGw,
  udp: async () => (await import('@flannel/backend-udp')).udp,
  alloc: async () => (await import('@flannel/backend-alloc')).alloc,
  'aws-vpc': async () => (await import('@flannel/backend-aws')).awsVpc,
  gce: async () => (await import('@flannel/backend-gce')).gce,
  'ali-vpc': async () => (await import('@flannel/backend-ali')).aliVpc,
}

async function factoryOf(type: string): Promise<BackendFactory> {
  const pkg = BACKEND_PACKAGES[type]!
  let make: () => BackendFactory
  try {
    make = await IMPORTS[type]!()
  } catch (error) {
    const reason = error instanceof Error ? error.message : String(error)
    throw new BackendPackageError(type, pkg, reason, { cause: error })
  }
  if (typeof make !== 'function') {
    throw new BackendPackageError(type, pkg, 'it does not export its factory')
  }
  return make()
}

export { BACKEND_PACKAGES, BackendPackageError, lazyBackend }
export type { BackendSource }

/** Every backend the command can run, each package loaded when its type is configured. */
export const BACKENDS: readonly BackendFactory[] = Object.keys(IMPORTS).map((type) =>
  defineBackend(type, async (ctx) => (await factoryOf(type)).create(ctx)),
)
