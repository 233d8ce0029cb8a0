import type { BackendFactory, BackendTable } from '@flannel/core'
import { BACKEND_PACKAGES } from './backends.js'

/**
 * The backend table of the bundled `flannel-agent` (dist/cli.js; see
 * tsup.config.ts): the same table as `./backends.js`, with each package
 * imported by a literal name so that the bundler makes every backend a chunk
 * of its own, loaded on first use.
 */
type BackendModule = { createBackend?: unknown }

const IMPORTS: Readonly<Record<string, () => Promise<BackendModule>>> = {
  vxlan: () => import('@flannel/backend-vxlan'),
  'host-gw': () => import('@flannel/backend-hostgw'),
  udp: () => import('@flannel/backend-udp'),
  alloc: () => import('@flannel/backend-alloc'),
  'aws-vpc': () => import('@flannel/backend-aws'),
  gce: () => import('@flannel/backend-gce'),
  'ali-vpc': () => import('@flannel/backend-ali'),
}

async function factoryOf(type: string): Promise<BackendFactory> {
  const mod = await IMPORTS[type]!()
  if (typeof mod.createBackend !== 'function') {
    throw new Error(`${BACKEND_PACKAGES[type]} does not export createBackend`)
  }
  return mod.createBackend as BackendFactory
}

export { BACKEND_PACKAGES }

/** Every backend the command can run, by `Backend.Type`, each loaded lazily. */
export const BACKENDS: BackendTable = Object.fromEntries(
  Object.keys(BACKEND_PACKAGES).map((type) => [type, { load: () => factoryOf(type) }]),
)
