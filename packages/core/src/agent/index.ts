export {
  Agent,
  DEFAULT_RENEW_MARGIN_MS,
  DEFAULT_RENEW_RETRY_MS,
  SUBNET_FILE_ATTEMPTS,
  SUBNET_FILE_RETRY_MS,
} from './agent.js'
export {
  DEFAULT_CONFIG_RETRY_MS,
  fetchNetworkConfig,
  isRetryableConfigError,
} from './fetch-config.js'
export type { FetchNetworkConfigOptions } from './fetch-config.js'
export {
  MAX_RECOVERY_RETRY_MS,
  configDifference,
  handleLeaseLoss,
  holdPeerRemovalsWhileOwnLeaseIsGone,
} from './lease-loss.js'
export type { LeaseLossOptions, LeaseLossOutcome } from './lease-loss.js'
export { isOwnSubnet, leasesOverlap, withoutOwnLease } from './own-lease.js'
export type { PeerLeaseOptions } from './own-lease.js'
export type {
  AgentEvent,
  AgentOptions,
  AgentReady,
  AgentStatus,
  ExternalInterfaceSource,
  PrepareContext,
} from './agent.js'
export { systemTimers } from './timers.js'
export type { AgentTimers } from './timers.js'
