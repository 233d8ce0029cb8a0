/**
 * @flannel/registry-etcd: `EtcdRegistry`, flannel's etcd v3 lease registry,
 * byte-compatible with flanneld >= v0.18.
 *
 * @packageDocumentation
 */
export { EtcdRegistry, CONFIG_NOT_FOUND_MESSAGE } from './registry.js'
export type { EtcdRegistryStats } from './registry.js'
export { EtcdRequestError } from './errors.js'
export {
  DEFAULT_DIAL_TIMEOUT_MS,
  DEFAULT_LEASE_TTL_SECONDS,
  DEFAULT_PREFIX,
  DEFAULT_REQUEST_TIMEOUT_MS,
} from './options.js'
export type { EtcdRegistryOptions, Pem } from './options.js'
