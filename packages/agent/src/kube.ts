import type { Logger } from '@flannel/core'
import type { KubeRegistry } from '@flannel/registry-kube'
import type { AgentCommandOptions } from './flags.js'
import { firstLine } from './text.js'

/** A kube-mode start-up failure; `message` is flanneld's line (`Failed to create SubnetManager: ...`). */
export class SubnetManagerError extends Error {
  constructor(detail: string, options?: { cause?: unknown }) {
    super(`Failed to create SubnetManager: ${detail}`, options)
    this.name = 'SubnetManagerError'
  }
}

/** What {@link createKubeRegistry} read from the environment (spec: kube.md section 2.2). */
export interface KubeEnvironment {
  readonly NODE_NAME?: string | undefined
  readonly POD_NAME?: string | undefined
  readonly POD_NAMESPACE?: string | undefined
  readonly EVENT_QUEUE_DEPTH?: string | undefined
}

/**
 * flanneld's `kube.NewSubnetManager` for the command (spec: kube.md
 * section 4, steps 1-5): the client from `--kubeconfig-file` /
 * `--kube-api-url` / in-cluster settings, the node name from `NODE_NAME`
 * (else the pod `POD_NAMESPACE/POD_NAME`), net-conf.json from
 * `--net-config-path`, the annotation prefix; each failure with flanneld's
 * text. Logs `Created subnet manager: Kubernetes Subnet Manager - <node>`.
 *
 * @throws SubnetManagerError (`Failed to create SubnetManager: ...`).
 */
export async function createKubeRegistry(
  options: AgentCommandOptions,
  env: KubeEnvironment,
  logger: Logger,
): Promise<KubeRegistry> {
  const { KubeRegistry } = await import('@flannel/registry-kube')
  let registry: KubeRegistry
  try {
    registry = new KubeRegistry({
      kubeconfigPath: options.kubeconfigFile || undefined,
      apiUrl: options.kubeApiUrl || undefined,
      nodeName: env.NODE_NAME || undefined,
      pod:
        env.POD_NAME && env.POD_NAMESPACE
          ? { name: env.POD_NAME, namespace: env.POD_NAMESPACE }
          : undefined,
      netConfigPath: options.netConfigPath,
      annotationPrefix: options.kubeAnnotationPrefix,
      logger,
    })
  } catch (error) {
    throw new SubnetManagerError(`error creating network manager: ${firstLine(error)}`, {
      cause: error,
    })
  }
  const fail = async (detail: string, cause: unknown): Promise<never> => {
    await registry.close()
    throw new SubnetManagerError(detail, { cause })
  }
  try {
    await registry.apiUrl()
  } catch (error) {
    return fail(firstLine(error), error)
  }
  let node: string
  try {
    node = await registry.nodeName()
  } catch (error) {
    return fail(firstLine(error), error)
  }
  try {
    await registry.getNetworkConfig()
  } catch (error) {
    if ((error as Error).message === 'none defined stack') {
      await registry.close()
      throw error
    }
    return fail(firstLine(error), error)
  }
  const depth = env.EVENT_QUEUE_DEPTH
  if (depth !== undefined && depth !== '' && !/^[+-]?\d+$/.test(depth)) {
    return fail(
      `error creating network manager: env EVENT_QUEUE_DEPTH=${depth} format error: strconv.Atoi: parsing ${JSON.stringify(depth)}: invalid syntax`,
      undefined,
    )
  }
  logger.info({ node }, `Created subnet manager: Kubernetes Subnet Manager - ${node}`)
  return registry
}
