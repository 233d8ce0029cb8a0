import type { BackendFactory, BackendTable } from '@flannel/core'

/**
 * Imports a backend package on demand and takes its `createBackend`, so that
 * a host running one backend never loads the others (nor their cloud SDKs).
 * The name is a variable on purpose: neither the bundler nor the type
 * declarations pull the backend packages in.
 */
async function factoryOf(pkg: string): Promise<BackendFactory> {
  const mod = (await import(pkg)) as { createBackend?: unknown }
  if (typeof mod.createBackend !== 'function') {
    throw new Error(`${pkg} does not export createBackend`)
  }
  return mod.createBackend as BackendFactory
}

/** Backend packages by `Backend.Type`. */
export const BACKEND_PACKAGES: Readonly<Record<string, string>> = {
  vxlan: '@flannel/backend-vxlan',
  'host-gw': '@flannel/backend-hostgw',
  udp: '@flannel/backend-udp',
  alloc: '@flannel/backend-alloc',
  'aws-vpc': '@flannel/backend-aws',
  gce: '@flannel/backend-gce',
  'ali-vpc': '@flannel/backend-ali',
}

/** Every backend the `flannel-agent` command can run, by `Backend.Type`, each loaded lazily. */
export const BACKENDS: BackendTable = Object.fromEntries(
  Object.entries(BACKEND_PACKAGES).map(([type, pkg]) => [type, { load: () => factoryOf(pkg) }]),
)
