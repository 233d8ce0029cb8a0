export type {
  Backend,
  BackendContext,
  BackendFactory,
  CreateBackend,
  ExternalInterface,
  Network,
  NetworkEvent,
  PreparedNetwork,
  PrepareOptions,
  RegisterOptions,
} from './types.js'
export { backendsByType, defineBackend, lookupBackend } from './lookup.js'
export { runStaleRouteCollector } from './collector.js'
export { registerPrepared } from './lease.js'
export { preparedWithUndo } from './undo.js'
export type { UndoableActivation, UndoablePreparation, UndoStep } from './undo.js'
export type { StaleRouteCollection, StaleRouteCollectorInit } from './collector.js'
export type { BackendEntry, BackendList, BackendTable } from './lookup.js'
