export type { NetworkConfig } from './types.js'
