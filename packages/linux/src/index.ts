/**
 * @flannel/linux: the host's network state over rtnetlink (`HostNetwork`),
 * an in-memory twin for tests, external-interface selection and flannel's
 * masquerade/forward rules. The machinery below the kernel backends is in
 * `@flannel/linux/backend`.
 *
 * @packageDocumentation
 */
export * from './types.js'
export { NetlinkError, isNetlinkError } from './errors.js'
export { MemoryHostNetwork, type MemoryLinkSpec, type MemoryCall } from './memory.js'
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
