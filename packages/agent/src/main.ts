/**
 * The `flannel-agent` command: flanneld's flags in, exit code out.
 * Exit 0 on SIGTERM/SIGINT (lease, subnet.env and data plane are kept) and,
 * as flanneld, on a revoked lease (its reason on stderr);
 * 1 with a one-line reason on stderr for bad flags or a fatal error.
 */
import { helpText, optionsFromFlags } from './flags.js'
import { startAgentCommand } from './command.js'
import { AGENT_VERSION } from './version.js'

async function main(): Promise<number> {
  let options
  try {
    options = optionsFromFlags(process.argv.slice(2), process.env)
  } catch (error) {
    process.stderr.write(`${(error as Error).message}\n`)
    return 1
  }
  if (options.help) {
    process.stdout.write(helpText())
    return 0
  }
  if (options.version) {
    // flanneld prints its version to stderr
    process.stderr.write(`v${AGENT_VERSION}\n`)
    return 0
  }
  const command = await startAgentCommand(options)
  const stop = (): void => command.stop()
  process.once('SIGTERM', stop)
  process.once('SIGINT', stop)
  const result = await command.done
  if (result.reason) process.stderr.write(`${result.reason}\n`)
  return result.code
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`${error instanceof Error ? error.message : String(error)}\n`)
    process.exit(1)
  },
)
