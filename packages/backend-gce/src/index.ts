/**
 * @flannel/backend-gce: flannel's `gce` backend. Each host adds a route for
 * its own subnet, with its instance as next hop, to the VPC network through
 * the Compute API (`@google-cloud/compute`, REST transport, loaded lazily),
 * and removes flannel's routes of leases that are gone.
 *
 * @packageDocumentation
 */
export { GceBackend, createBackend, gce, type GceOptions } from './backend.js'
export { DEFAULT_METADATA_ENDPOINT } from './metadata.js'
export { routeName } from './plan.js'
export {
  GceApiError,
  GceAuthError,
  GceDiscoveryError,
  GceMetadataError,
  GceOperationError,
  GceOperationTimeoutError,
  type GceApiErrorDetails,
} from './errors.js'
