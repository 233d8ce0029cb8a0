export type { AcquireOptions, CallOptions, SubnetRegistry } from './types.js'
