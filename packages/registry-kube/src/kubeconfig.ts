import { existsSync } from 'node:fs'
import type * as ClientNodeModule from '@kubernetes/client-node'
import type { KubeConfig } from '@kubernetes/client-node'
import { KubeConfigError } from './errors.js'
import type { KubeClusterOptions, KubeRegistryOptions } from './options.js'

/** The service account files of a pod (client-go's in-cluster config). */
export const SERVICE_ACCOUNT_TOKEN_PATH = '/var/run/secrets/kubernetes.io/serviceaccount/token'

type ClientNode = typeof ClientNodeModule
let loading: Promise<ClientNode> | undefined

/**
 * `@kubernetes/client-node`, imported on first use: it is ESM-only and takes
 * most of a second to load, which a program that never talks to Kubernetes
 * (or the CJS build of this package) should not pay.
 */
export function loadClientNode(): Promise<ClientNode> {
  loading ??= import('@kubernetes/client-node')
  return loading
}

function pemText(value: string | Uint8Array | undefined): string | undefined {
  if (value === undefined) return undefined
  return Buffer.from(typeof value === 'string' ? value : Buffer.from(value)).toString('base64')
}

function explicit(kc: KubeConfig, c: KubeClusterOptions): void {
  kc.loadFromClusterAndUser(
    {
      name: 'cluster',
      server: c.server,
      skipTLSVerify: c.insecureSkipTLSVerify ?? false,
      ...(c.ca === undefined ? {} : { caData: pemText(c.ca) }),
    },
    {
      name: 'user',
      ...(c.token === undefined ? {} : { token: c.token }),
      ...(c.cert === undefined ? {} : { certData: pemText(c.cert) }),
      ...(c.key === undefined ? {} : { keyData: pemText(c.key) }),
    },
  )
}

/**
 * Builds the connection settings as flanneld's `clientcmd.BuildConfigFromFlags`
 * does (spec: kube.md section 2.2): an explicit `cluster` or `kubeConfig`
 * first; else the `kubeconfigPath` file (only that file), with `apiUrl`
 * replacing its server; else `apiUrl` alone (no credentials); else the
 * in-cluster service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, token and CA).
 *
 * @throws KubeConfigError (`fail to create kubernetes config: ...`) when nothing usable is found.
 */
export async function buildKubeConfig(options: KubeRegistryOptions): Promise<KubeConfig> {
  if (options.kubeConfig !== undefined) return options.kubeConfig
  const { KubeConfig } = await loadClientNode()
  const kc = new KubeConfig()
  if (options.cluster !== undefined) {
    explicit(kc, options.cluster)
    return kc
  }
  const apiUrl = options.apiUrl || undefined
  const path = options.kubeconfigPath || undefined
  if (path !== undefined) {
    try {
      kc.loadFromFile(path)
    } catch (err) {
      throw new KubeConfigError(path, (err as Error).message, { cause: err })
    }
    const cluster = kc.getCurrentCluster()
    const user = kc.getCurrentUser()
    if (cluster === null) {
      throw new KubeConfigError(path, `no current cluster in ${path}`)
    }
    if (apiUrl !== undefined) {
      kc.loadFromClusterAndUser({ ...cluster, server: apiUrl }, user ?? { name: 'user' })
    }
    return kc
  }
  if (apiUrl !== undefined) {
    kc.loadFromClusterAndUser(
      { name: 'cluster', server: apiUrl, skipTLSVerify: false },
      { name: 'user' },
    )
    return kc
  }
  const host = process.env.KUBERNETES_SERVICE_HOST
  const port = process.env.KUBERNETES_SERVICE_PORT
  if (!host || !port) {
    throw new KubeConfigError(
      'in-cluster',
      'unable to load in-cluster configuration, KUBERNETES_SERVICE_HOST and KUBERNETES_SERVICE_PORT must be defined',
    )
  }
  if (!existsSync(SERVICE_ACCOUNT_TOKEN_PATH)) {
    throw new KubeConfigError(
      'in-cluster',
      `open ${SERVICE_ACCOUNT_TOKEN_PATH}: no such file or directory`,
    )
  }
  kc.loadFromCluster()
  return kc
}
