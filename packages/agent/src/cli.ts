#!/usr/bin/env node
/**
 * The `flannel-agent` command (see main.ts). This entry only turns on
 * Node's on-disk compile cache (Node 22.1 and later; no-op before, and off
 * with NODE_DISABLE_COMPILE_CACHE=1) before loading the command, so that a
 * restart reuses the compiled code of every module instead of compiling the
 * bundle again.
 */
import module from 'node:module'

const withCache = module as { enableCompileCache?: () => unknown }
try {
  withCache.enableCompileCache?.()
} catch {
  // a read-only or missing cache directory only costs the speed-up
}
await import('./main.js')
