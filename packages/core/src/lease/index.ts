export type { Lease, LeaseAttrs, LeaseEvent, PreviousSubnets } from './types.js'
