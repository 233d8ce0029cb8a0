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
export { DEFAULT_LEASE_TTL_MS, MemoryRegistry, NEVER_EXPIRES } from './memory.js'
export type { MemoryRegistryOptions } from './memory.js'
