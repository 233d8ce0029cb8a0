/**
 * @flannel/registry-kube: `KubeRegistry`, flanneld's `--kube-subnet-mgr`
 * (Node podCIDRs, annotations, the NetworkUnavailable condition),
 * byte-compatible with flanneld v0.28.
 *
 * @packageDocumentation
 */
export { KubeRegistry, KUBE_LEASE_LIFETIME_MS } from './registry.js'
export type { StoredPublicIPs } from './registry.js'
export {
  DEFAULT_ANNOTATION_PREFIX,
  annotationKeys,
  annotationPatchBody,
  planAnnotations,
} from './annotations.js'
export type { AnnotationKeys, AnnotationPlan, Annotations } from './annotations.js'
export { nodeToLease, ownNodeCidrs, ownLeaseSubnets, containsCidr } from './node.js'
export type { NodeCidrs, NodeLeaseResult, NodeObject } from './node.js'
export {
  AnnotationPrefixError,
  KubeApiError,
  KubeConfigError,
  KubeForbiddenError,
  NodeNameError,
  NodeNotFoundError,
  PodCidrError,
  PodCidrMissingError,
} from './errors.js'
export {
  DEFAULT_ATTEMPT_TIMEOUT_MS,
  DEFAULT_NET_CONFIG_PATH,
  DEFAULT_NODE_WAIT_MS,
} from './options.js'
export type { KubeClusterOptions, KubeRegistryOptions } from './options.js'
export { buildKubeConfig, loadClientNode } from './kubeconfig.js'
