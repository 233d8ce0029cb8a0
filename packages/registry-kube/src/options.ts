import { InvalidArgumentError, silentLogger, type Logger, type NetworkConfig } from '@flannel/core'
import type { KubeConfig } from '@kubernetes/client-node'
import { DEFAULT_ANNOTATION_PREFIX } from './annotations.js'

/** Default `--net-config-path` of flanneld's kube mode. */
export const DEFAULT_NET_CONFIG_PATH = '/etc/kube-flannel/net-conf.json'
/** How long {@link KubeRegistryOptions.nodeWaitMs} waits for the own Node to appear by default (flanneld: 30 s). */
export const DEFAULT_NODE_WAIT_MS = 30_000
/** Default longest single request before it is abandoned and retried. */
export const DEFAULT_ATTEMPT_TIMEOUT_MS = 10_000

/** An explicit API server connection (instead of a kubeconfig file or in-cluster settings). */
export interface KubeClusterOptions {
  /** API server URL, e.g. `https://127.0.0.1:6443`. */
  readonly server: string
  /** PEM of the CA that signed the server's certificate (contents, not a path). */
  readonly ca?: string | Uint8Array | undefined
  /** Bearer token. */
  readonly token?: string | undefined
  /** PEM client certificate and key, given together. */
  readonly cert?: string | Uint8Array | undefined
  readonly key?: string | Uint8Array | undefined
  /** Skip verifying the server's certificate (tests only). */
  readonly insecureSkipTLSVerify?: boolean | undefined
}

/** Options of `new KubeRegistry(...)`. */
export interface KubeRegistryOptions {
  /**
   * This host's Node name (`NODE_NAME`). When absent, `pod` names the pod to
   * read `spec.nodeName` from (`POD_NAME`, `POD_NAMESPACE`), as flanneld does.
   */
  readonly nodeName?: string | undefined
  /** The pod whose `spec.nodeName` is this host's Node (used when `nodeName` is absent). */
  readonly pod?: { readonly name: string; readonly namespace: string } | undefined
  /**
   * The network config: net-conf.json's text, an object, or a parsed
   * `NetworkConfig`. Read without etcd mode's checks, as flanneld's kube
   * mode does. When absent, `netConfigPath` is read.
   */
  readonly netConfig?: string | object | NetworkConfig | undefined
  /** net-conf.json path (`--net-config-path`), read once on first use; default `/etc/kube-flannel/net-conf.json`. */
  readonly netConfigPath?: string | undefined
  /** Annotation prefix (`--kube-annotation-prefix`), normalised as flanneld; default `flannel.alpha.coreos.com`. */
  readonly annotationPrefix?: string | undefined
  /** kubeconfig file (`--kubeconfig-file`); only this file is read (not `$KUBECONFIG`). */
  readonly kubeconfigPath?: string | undefined
  /** API server URL (`--kube-api-url`); overrides the kubeconfig's server, or alone gives a connection without credentials. */
  readonly apiUrl?: string | undefined
  /** An explicit connection; wins over `kubeconfigPath` and in-cluster settings. */
  readonly cluster?: KubeClusterOptions | undefined
  /** A ready `KubeConfig` of `@kubernetes/client-node`; wins over everything above. */
  readonly kubeConfig?: KubeConfig | undefined
  /**
   * Wait in `acquireLease` for a podCIDR to be assigned (logging flanneld's
   * `node "<n>" pod cidr not assigned`), instead of failing at once with
   * `PodCidrMissingError` as flanneld does. Default true.
   */
  readonly waitForPodCidr?: boolean | undefined
  /** How long `acquireLease` waits for the Node object to exist; default 30000 (flanneld's 30 s). */
  readonly nodeWaitMs?: number | undefined
  /** Longest single request in ms (watches excepted); default 10000. */
  readonly attemptTimeoutMs?: number | undefined
  /** pino-compatible logger (default: silent). */
  readonly logger?: Logger | undefined
  /** Random source in [0, 1) for retry jitter (default `Math.random`). */
  readonly random?: (() => number) | undefined
}

/** Options after validation, with defaults applied. */
export interface ResolvedOptions {
  readonly nodeName: string | undefined
  readonly pod: { readonly name: string; readonly namespace: string } | undefined
  readonly netConfig: string | object | NetworkConfig | undefined
  readonly netConfigPath: string
  readonly annotationPrefix: string
  readonly waitForPodCidr: boolean
  readonly nodeWaitMs: number
  readonly attemptTimeoutMs: number
  readonly logger: Logger
  readonly random: () => number
}

function positiveInteger(field: string, value: number | undefined, fallback: number): number {
  if (value === undefined) return fallback
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value <= 0) {
    throw new InvalidArgumentError(field, value, 'must be a positive integer')
  }
  return value
}

function optionalString(field: string, value: unknown): string | undefined {
  if (value === undefined || value === '') return undefined
  if (typeof value !== 'string') throw new InvalidArgumentError(field, value, 'must be a string')
  return value
}

/** Validates options and applies defaults; throws `InvalidArgumentError` naming the option. */
export function resolveOptions(options: KubeRegistryOptions): ResolvedOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidArgumentError('options', options, 'must be an object')
  }
  const nodeName = optionalString('nodeName', options.nodeName)
  let pod: ResolvedOptions['pod']
  if (options.pod !== undefined) {
    const name = optionalString('pod.name', options.pod.name)
    const namespace = optionalString('pod.namespace', options.pod.namespace)
    if (name !== undefined && namespace !== undefined) pod = { name, namespace }
  }
  if (options.random !== undefined && typeof options.random !== 'function') {
    throw new InvalidArgumentError('random', typeof options.random, 'must be a function')
  }
  return {
    nodeName,
    pod,
    netConfig: options.netConfig,
    netConfigPath:
      optionalString('netConfigPath', options.netConfigPath) ?? DEFAULT_NET_CONFIG_PATH,
    annotationPrefix:
      optionalString('annotationPrefix', options.annotationPrefix) ?? DEFAULT_ANNOTATION_PREFIX,
    waitForPodCidr: options.waitForPodCidr ?? true,
    nodeWaitMs: positiveInteger('nodeWaitMs', options.nodeWaitMs, DEFAULT_NODE_WAIT_MS),
    attemptTimeoutMs: positiveInteger(
      'attemptTimeoutMs',
      options.attemptTimeoutMs,
      DEFAULT_ATTEMPT_TIMEOUT_MS,
    ),
    logger: options.logger ?? silentLogger,
    random: options.random ?? Math.random,
  }
}
