/**
 * @flannel/testkit/kube: a real kube-apiserver (built from the Go module
 * proxy by `scripts/build-kube-apiserver.sh`, cached by version) with its own
 * etcd, on loopback or inside a test namespace.
 *
 * ```ts
 * import { kubeSkipReason, startKubeApiserver } from '@flannel/testkit/kube'
 * const skip = kubeSkipReason()
 * describe.skipIf(skip)(`kube tests${skip ? ` (skipped: ${skip})` : ''}`, () => { ... })
 * ```
 *
 * @packageDocumentation
 */
export {
  KUBE_APISERVER_VERSION,
  cachedKubeApiserverPath,
  findKubeApiserver,
  flannelCacheDir,
  kubeSkipReason,
} from './available.js'
export { kubeconfigDocument, startKubeApiserver } from './launcher.js'
export type {
  KubeApiserver,
  KubeNode,
  KubeRequestOptions,
  KubeResponse,
  KubeWatch,
  KubeconfigOptions,
  ServiceAccountCredentials,
  StartKubeApiserverOptions,
  WatchEvent,
} from './launcher.js'
