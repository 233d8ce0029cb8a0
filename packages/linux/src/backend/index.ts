/**
 * @flannel/linux/backend: the machinery below the kernel backends (the
 * serial change queue with retries, the reconcile loop, VXLAN MTU limits,
 * blackhole route sync, address normalisation) and the rule texts flannel
 * installs. A program wiring an agent needs none of these; they stay out of
 * the root export.
 *
 * @packageDocumentation
 */
export { normalizeCidr, normalizeIp, normalizeMac } from '../address.js'
export { CommandError, runCommand } from '../command.js'
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
} from '../rules.js'
export { SerialQueue, withRetry, type RetryHooks } from '../serial.js'
export { syncBlackholeRoutes, type BlackholeSyncResult } from '../blackhole.js'
export { ReconcileLoop, type ReconcileLoopOptions } from '../reconcile.js'
export { VXLAN_IPV4_HEADROOM, VXLAN_IPV6_HEADROOM, vxlanMaxMtu } from '../vxlan-mtu.js'
