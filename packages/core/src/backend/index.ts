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
export type { BackendEntry, BackendTable } from './lookup.js'
