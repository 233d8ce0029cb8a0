/**
 * @flannel/core: network config, subnet leases, the SubnetRegistry contract,
 * the Backend interface and the Agent that wires a registry to a backend.
 * What only registry authors need (allocator, codecs, snapshot diff) is in
 * `@flannel/core/registry`.
 *
 * @packageDocumentation
 */
export * from './errors.js'
export * from './logger.js'
export * from './ip/index.js'
export * from './config/index.js'
export * from './lease/index.js'
export type { AcquireOptions, CallOptions, StoredAttrs, SubnetRegistry } from './registry/types.js'
export { DEFAULT_LEASE_TTL_MS, MemoryRegistry, NEVER_EXPIRES } from './registry/memory.js'
export type { MemoryRegistryOptions } from './registry/memory.js'
export * from './backend/index.js'
export * from './subnetenv/index.js'
export * from './agent/index.js'
