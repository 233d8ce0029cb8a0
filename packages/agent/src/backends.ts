import type { BackendFactory, BackendTable } from '@flannel/core'

/**
 * Takes `createBackend` from a backend package imported on demand, so that a
 * host running one backend never loads the others (nor their cloud SDKs).
 */
async function factoryOf(pkg: string, load: () => Promise<unknown>): Promise<BackendFactory> {
  const mod = (await load()) as { createBackend?: unknown }
  if (typeof mod.createBackend !== 'function') {
    throw new Error(`${pkg} does not export createBackend`)
  }
  return mod.createBackend as BackendFactory
}

/** Every backend the `flannel-agent` command can run, by `Backend.Type`, each loaded lazily. */
export const BACKENDS: BackendTable = {
  vxlan: {
    load: () => factoryOf('@flannel/backend-vxlan', () => import('@flannel/backend-vxlan')),
  },
  'host-gw': {
    load: () => factoryOf('@flannel/backend-hostgw', () => import('@flannel/backend-hostgw')),
  },
  udp: { load: () => factoryOf('@flannel/backend-udp', () => import('@flannel/backend-udp')) },
  alloc: {
    load: () => factoryOf('@flannel/backend-alloc', () => import('@flannel/backend-alloc')),
  },
  'aws-vpc': {
    load: () => factoryOf('@flannel/backend-aws', () => import('@flannel/backend-aws')),
  },
  gce: { load: () => factoryOf('@flannel/backend-gce', () => import('@flannel/backend-gce')) },
  'ali-vpc': {
    load: () => factoryOf('@flannel/backend-ali', () => import('@flannel/backend-ali')),
  },
}
