import { spawn } from 'node:child_process'
import { FlannelError, type FlannelErrorOptions } from '@flannel/core'

/**
 * Runs a program with arguments and optional stdin, resolving with stdout.
 * Rejects with {@link CommandError} on a non-zero exit. Injected so that
 * callers (and tests) can run the tools elsewhere, e.g. under
 * `ip netns exec <ns>`.
 */
export type CommandRunner = (
  command: string,
  args: readonly string[],
  input?: string,
) => Promise<string>

/** A host tool (iptables-restore, nft, ...) failed or is missing. */
export class CommandError extends FlannelError {
  /** The program and its arguments. */
  readonly command: string
  /** Exit code, or undefined when the program could not be started. */
  readonly exitCode: number | undefined
  /** What the program wrote to stderr. */
  readonly stderr: string

  constructor(
    command: string,
    exitCode: number | undefined,
    stderr: string,
    options: FlannelErrorOptions = {},
  ) {
    super(
      exitCode === undefined ? 'COMMAND_NOT_FOUND' : 'COMMAND_FAILED',
      `${command} ${exitCode === undefined ? 'could not be started' : `exited with ${exitCode}`}${stderr ? `: ${stderr.trim()}` : ''}`,
      options,
    )
    this.command = command
    this.exitCode = exitCode
    this.stderr = stderr
  }
}

/** Runs commands directly in this process's namespaces. */
export const runCommand: CommandRunner = (command, args, input) =>
  new Promise<string>((resolve, reject) => {
    const line = [command, ...args].join(' ')
    const child = spawn(command, [...args], { stdio: ['pipe', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('error', (error) =>
      reject(new CommandError(line, undefined, error.message, { cause: error })),
    )
    child.on('close', (code) =>
      code === 0 ? resolve(stdout) : reject(new CommandError(line, code ?? -1, stderr)),
    )
    child.stdin.on('error', () => undefined)
    child.stdin.end(input ?? '')
  })
