/**
 * A local stand-in for Alibaba Cloud's ECS/VPC RPC API and instance metadata
 * server, for the ali-vpc backend's tests. See {@link startAliEmulator}.
 */
export { startAliEmulator } from './emulator.js'
export type {
  AliEmulator,
  AliEmulatorOptions,
  AliRequestRecord,
  AliRouteEntry,
} from './emulator.js'
export { percentEncode, signRpc, stringToSign } from './signature.js'
