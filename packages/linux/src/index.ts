/**
 * @flannel/linux: the host's network state over rtnetlink (`HostNetwork`),
 * an in-memory twin for tests, external-interface selection and flannel's
 * masquerade/forward rules.
 *
 * @packageDocumentation
 */
export * from './types.js'
export { NetlinkError, isNetlinkError } from './errors.js'
export { MemoryHostNetwork, type MemoryLinkSpec, type MemoryCall } from './memory.js'
export { normalizeCidr, normalizeIp, normalizeMac } from './address.js'
export { NetlinkHostNetwork, type NetlinkHostNetworkOptions } from './netlink.js'
export {
  ExternalInterfaceError,
  NO_MATCHING_INTERFACE_MESSAGE,
  chooseExternalInterface,
  selectExternalInterface,
  type ExternalInterfaceOptions,
  type InterfaceSnapshot,
} from './extiface.js'
export { CommandError, runCommand, type CommandRunner } from './command.js'
export {
  forwardChain,
  masqueradeChain,
  nftTable,
  nftablesDeleteScript,
  nftablesScript,
  type IpVersion,
  type IptablesChain,
  type NftablesRules,
  type RuleNetworks,
} from './rules.js'
export { HostRules, type HostRulesEvent, type HostRulesOptions } from './hostrules.js'
export { SerialQueue, withRetry, type RetryHooks } from './serial.js'
export { syncBlackholeRoutes, type BlackholeSyncResult } from './blackhole.js'
export { ReconcileLoop, type ReconcileLoopOptions } from './reconcile.js'
export { VXLAN_IPV4_HEADROOM, VXLAN_IPV6_HEADROOM, vxlanMaxMtu } from './vxlan-mtu.js'
