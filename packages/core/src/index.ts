/**
 * @flannel/core: network config, subnet leases, the SubnetRegistry contract,
 * the Backend interface and the Agent that wires a registry to a backend.
 *
 * @packageDocumentation
 */
export * from './errors.js'
export * from './logger.js'
export * from './ip/index.js'
export * from './config/index.js'
export * from './lease/index.js'
export * from './registry/index.js'
export * from './backend/index.js'
export * from './subnetenv/index.js'
export * from './agent/index.js'
export * from './util/index.js'
