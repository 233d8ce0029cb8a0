/**
 * @flannel/backend-ali: flannel's `ali-vpc` backend. Each host puts a route
 * for its own subnet, with its ECS instance as next hop, into the VPC's route
 * table through Alibaba Cloud's RPC API (`@alicloud/pop-core`, loaded lazily).
 *
 * @packageDocumentation
 */
export {
  AliVpcBackend,
  createBackend,
  aliVpc,
  DEFAULT_API_ENDPOINT,
  DEFAULT_API_VERSION,
  type AliVpcOptions,
} from './backend.js'
export type { AliRpcClient } from './api.js'
export { DEFAULT_METADATA_ENDPOINT } from './metadata.js'
export {
  AliApiError,
  AliAuthError,
  AliDiscoveryError,
  AliMetadataError,
  AliRouteTimeoutError,
  type AliApiErrorDetails,
} from './errors.js'
