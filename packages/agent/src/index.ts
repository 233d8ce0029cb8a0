/**
 * @flannel/agent: the `flannel-agent` command (flanneld in etcd or kube mode, built
 * from the @flannel packages) and the pieces to embed it.
 *
 * @packageDocumentation
 */
export { optionsFromFlags, helpText, envName, FLAGS, UsageError } from './flags.js'
export type { AgentCommandOptions } from './flags.js'
export { startAgentCommand, levelForVerbosity } from './command.js'
export type { AgentCommand, AgentCommandDeps, AgentCommandResult } from './command.js'
export { BACKENDS, BACKEND_PACKAGES, BackendPackageError, lazyBackend } from './backends.js'
export type { BackendSource } from './backends.js'
export { AgentMetrics } from './metrics.js'
export { AGENT_VERSION } from './version.js'
