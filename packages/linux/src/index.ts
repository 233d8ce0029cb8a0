/**
 * @flannel/linux: the host's network state over rtnetlink (`HostNetwork`),
 * external-interface selection and flannel's masquerade/forward rules. The
 * machinery below the kernel backends is in `@flannel/linux/backend`, the
 * in-memory twin for tests in `@flannel/linux/memory`.
 *
 * @packageDocumentation
 */
export * from './types.js'
export { NetlinkError, isNetlinkError } from './errors.js'
/**
 * The in-memory host network, also here for existing imports.
 * @deprecated Import it from `@flannel/linux/memory`.
 */
export { MemoryHostNetwork, type MemoryLinkSpec, type MemoryCall } from './memory/index.js'
export { NetlinkHostNetwork, type NetlinkHostNetworkOptions } from './netlink.js'
export {
  ExternalInterfaceError,
  NO_MATCHING_INTERFACE_MESSAGE,
  chooseExternalInterface,
  selectExternalInterface,
  type ExternalInterfaceOptions,
  type InterfaceSnapshot,
} from './extiface.js'
export type { CommandRunner } from './command.js'
export { HostRules, type HostRulesEvent, type HostRulesOptions } from './hostrules.js'
