import type { BackendFactory } from '@flannel/core'
import {
  BACKEND_PACKAGES,
  BackendPackageError,
  lazyBackend,
  lazyBackendFrom,
  type BackendSource,
} from './backends.js'

/**
 * The backend list of the bundled `flannel-agent` (dist/cli.js; see
 * tsup.config.ts): the same list as `./backends.js`, with each package
 * imported by a literal name so that the bundler makes every backend a chunk
 * of its own, loaded on first use and sharing the bundle's one copy of
 * @flannel/core and rxjs.
 */
const IMPORTS: Readonly<Record<string, () => Promise<object>>> = {
  vxlan: () => import('@flannel/backend-vxlan'),
  'host-gw': () => import('@flannel/backend-hostgw'),
  udp: () => import('@flannel/backend-udp'),
  alloc: () => import('@flannel/backend-alloc'),
  'aws-vpc': () => import('@flannel/backend-aws'),
  gce: () => import('@flannel/backend-gce'),
  'ali-vpc': () => import('@flannel/backend-ali'),
}

export { BACKEND_PACKAGES, BackendPackageError, lazyBackend }
export type { BackendSource }

/** Every backend the command can run, each package loaded when its type is configured. */
export const BACKENDS: readonly BackendFactory[] = Object.entries(IMPORTS).map(([type, load]) =>
  lazyBackendFrom(type, load),
)
