export type { Lease, LeaseAttrs, LeaseEvent, PreviousSubnets } from './types.js'
export {
  encodeLeaseAttrs,
  decodeLeaseAttrs,
  encodeBackendData,
  decodeBackendData,
} from './codec.js'
export {
  hostBitsProblem,
  isCanonicalLease,
  parseLeaseKey,
  parseSubnetKey,
  requireCanonicalSubnets,
  subnetKey,
} from './key.js'
export type { SubnetKey } from './key.js'
