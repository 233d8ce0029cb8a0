/**
 * How the benches run the `flannel-agent` command: the built
 * `packages/agent/dist/cli.js` when it exists (`pnpm -s build`; what a
 * deployment runs), else the source through tsx (slower to start and about
 * 100 MiB more RSS for the TypeScript loader).
 */
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'

/** The built command (`pnpm -s build`). */
export const DIST_CLI = fileURLToPath(
  new URL('../../../packages/agent/dist/cli.js', import.meta.url),
)
const SOURCE_CLI = fileURLToPath(new URL('../../../packages/agent/src/cli.ts', import.meta.url))

/** The node arguments that start the agent, and where it comes from (`dist` or `source (tsx)`). */
export function agentCli(): { readonly args: readonly string[]; readonly from: string } {
  return existsSync(DIST_CLI)
    ? { args: [DIST_CLI], from: 'dist' }
    : {
        args: ['--conditions=@flannel/source', '--import', 'tsx', SOURCE_CLI],
        from: 'source (tsx)',
      }
}
