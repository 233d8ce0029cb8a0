/**
 * @flannel/linux/memory: an in-memory {@link HostNetwork} for tests and
 * single-process simulations (no kernel, no root), with the same checks and
 * errors as the rtnetlink one.
 *
 * @packageDocumentation
 */
export { MemoryHostNetwork, type MemoryLinkSpec, type MemoryCall } from './host-network.js'
