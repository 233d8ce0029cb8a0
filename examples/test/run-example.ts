import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const execFileAsync = promisify(execFile)

/** The examples folder, where the examples run from. */
export const EXAMPLES_DIR = fileURLToPath(new URL('..', import.meta.url))

/** The node arguments that run an example from source: `node <args> <file>`. */
export const EXAMPLE_NODE_ARGS = ['--conditions=@flannel/source', '--import', 'tsx'] as const

/**
 * Runs an example (a path relative to examples/) to completion from source
 * with tsx; resolves with its output, rejects when it exits non-zero.
 */
export function runExample(
  file: string,
  options: { env?: NodeJS.ProcessEnv; timeoutMs?: number } = {},
): Promise<{ stdout: string; stderr: string }> {
  return execFileAsync(process.execPath, [...EXAMPLE_NODE_ARGS, file], {
    cwd: EXAMPLES_DIR,
    env: options.env ?? process.env,
    ...(options.timeoutMs !== undefined ? { timeout: options.timeoutMs } : {}),
  })
}
