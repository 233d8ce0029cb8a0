export type {
  Backend,
  BackendContext,
  BackendFactory,
  ExternalInterface,
  Network,
  NetworkEvent,
  RegisterOptions,
} from './types.js'
export { lookupBackend } from './lookup.js'
export { runStaleRouteCollector } from './collector.js'
export { acquireBackendLease, setUpOrReleaseLease } from './lease.js'
export type { StaleRouteCollection, StaleRouteCollectorInit } from './collector.js'
export type { BackendEntry, BackendTable } from './lookup.js'
