export type { NetworkConfig } from './types.js'
export { parseNetworkConfig } from './parse.js'
export { backendOption } from './backend-options.js'
export type { BackendOptionKind, BackendOptionKinds } from './backend-options.js'
