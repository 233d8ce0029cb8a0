/**
 * @flannel/core/registry: the parts for writing a `SubnetRegistry` (or a
 * tool that reads flannel's store): the store-neutral allocator, the
 * snapshot diff, flanneld's lease key and value codecs, the retry helpers,
 * the cloud backends' metadata request, and the lease helpers of the older one-call backend form. An agent built
 * from the packages needs none of these; they stay out of the root export.
 *
 * @packageDocumentation
 */
export type { AcquireOptions, CallOptions, StoredAttrs, SubnetRegistry } from './types.js'
export {
  ALLOCATION_CANDIDATES,
  chooseSubnet,
  freeIpv6Subnets,
  freeSubnets,
  isCompatible,
} from './allocate.js'
export type { AllocationDecision } from './allocate.js'
export { DEFAULT_ACQUIRE_ATTEMPTS, acquireFromStore } from './acquire.js'
export type { AcquireFromStoreOptions, AcquiredLease, LeaseStore } from './acquire.js'
export { diffLeases, leaseKey, leaseMap, sameLeaseValue } from './reconcile.js'
export {
  encodeLeaseAttrs,
  decodeLeaseAttrs,
  encodeBackendData,
  decodeBackendData,
} from '../lease/codec.js'
export {
  hostBitsProblem,
  isCanonicalLease,
  parseLeaseKey,
  parseSubnetKey,
  requireCanonicalSubnets,
  subnetKey,
} from '../lease/key.js'
export type { SubnetKey } from '../lease/key.js'
export { sleep } from '../util/sleep.js'
export { backoffDelay } from '../util/backoff.js'
export { describeError, fetchMetadata } from '../util/http.js'
export type { FetchMetadataOptions } from '../util/http.js'
export { acquireBackendLease, activateWithLease, setUpOrReleaseLease } from '../backend/lease.js'
