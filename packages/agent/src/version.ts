/**
 * The version of @flannel/agent, printed by `flannel-agent --version` (kept
 * equal to package.json's by a test; a constant works from source, ESM and CJS).
 */
export const AGENT_VERSION = '0.1.0'
