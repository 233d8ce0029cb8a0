/**
 * @flannel/backend-alloc: flannel's `alloc` backend. It acquires this host's
 * subnet lease and does nothing else; routing is left to something else.
 *
 * @packageDocumentation
 */
export { AllocBackend, createBackend, alloc } from './backend.js'
