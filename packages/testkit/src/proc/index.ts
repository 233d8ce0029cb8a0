/**
 * Child processes for tests: every process started here is killed (with its
 * process group) when the test stops it, on `killAllProcesses()`, and when
 * the test process exits.
 *
 * @packageDocumentation
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process'
import { readdir, readFile } from 'node:fs/promises'

/** A command failed: its line, exit code and stderr. */
export class ProcessError extends Error {
  constructor(
    readonly command: string,
    readonly exitCode: number | null,
    readonly stderr: string,
  ) {
    super(`${command} exited with ${String(exitCode)}${stderr ? `: ${stderr.trim()}` : ''}`)
    this.name = 'ProcessError'
  }
}

/**
 * Runs a command to completion and returns stdout; rejects with
 * {@link ProcessError} on a non-zero exit.
 */
export function execCommand(
  command: string,
  args: readonly string[],
  options: { readonly input?: string; readonly timeoutMs?: number } = {},
): Promise<string> {
  return new Promise((resolve, reject) => {
    const child = execFile(
      command,
      [...args],
      { maxBuffer: 64 * 1024 * 1024, timeout: options.timeoutMs ?? 30_000 },
      (error, stdout, stderr) => {
        if (error) {
          const code = typeof error.code === 'number' ? error.code : null
          reject(new ProcessError([command, ...args].join(' '), code, stderr || error.message))
        } else resolve(stdout)
      },
    )
    // A command that exits without reading stdin must not turn into an EPIPE error.
    child.stdin?.on('error', () => undefined)
    child.stdin?.end(options.input ?? '')
  })
}

/** A running child process started by {@link spawnProcess}. */
export interface ManagedProcess {
  /** The process id. */
  readonly pid: number
  /** Everything written to stdout so far. */
  stdout(): string
  /** Everything written to stderr so far. */
  stderr(): string
  /** Exit code once exited (null when killed by a signal), undefined while running. */
  readonly exitCode: number | null | undefined
  /** Resolves with the exit code (or null) when the process has exited. */
  readonly exited: Promise<number | null>
  /** Waits until stdout or stderr matches `pattern`; rejects on exit or after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>
  /** Sends `signal` (default SIGTERM) to the group, then SIGKILL after `graceMs` (default 3000). */
  stop(signal?: NodeJS.Signals, graceMs?: number): Promise<number | null>
}

const live = new Set<ChildProcess>()
let exitHook = false

function killGroup(child: ChildProcess, signal: NodeJS.Signals): void {
  if (child.pid === undefined) return
  try {
    process.kill(-child.pid, signal)
  } catch {
    try {
      child.kill(signal)
    } catch {
      // already gone
    }
  }
}

function installExitHook(): void {
  if (exitHook) return
  exitHook = true
  process.once('exit', () => {
    for (const child of live) killGroup(child, 'SIGKILL')
  })
}

/**
 * Starts a command in its own process group, collecting its output. It is
 * killed on `stop()`, {@link killAllProcesses} or when this process exits.
 */
export function spawnProcess(
  command: string,
  args: readonly string[],
  options: { readonly env?: NodeJS.ProcessEnv; readonly cwd?: string } = {},
): ManagedProcess {
  installExitHook()
  const child = spawn(command, [...args], {
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
    env: options.env ?? process.env,
    cwd: options.cwd,
  })
  live.add(child)
  let out = ''
  let err = ''
  const waiters = new Set<() => void>()
  const poke = () => {
    for (const w of [...waiters]) w()
  }
  child.stdout!.on('data', (d: Buffer) => {
    out += d.toString()
    poke()
  })
  child.stderr!.on('data', (d: Buffer) => {
    err += d.toString()
    poke()
  })
  let code: number | null | undefined
  const exited = new Promise<number | null>((resolve) => {
    child.on('exit', (c) => {
      code = c
      live.delete(child)
      poke()
      resolve(c)
    })
    child.on('error', (e) => {
      err += `\n${e.message}`
      code = null
      live.delete(child)
      poke()
      resolve(null)
    })
  })
  const managed: ManagedProcess = {
    pid: child.pid ?? -1,
    stdout: () => out,
    stderr: () => err,
    get exitCode() {
      return code
    },
    exited,
    waitFor(pattern, timeoutMs = 10_000) {
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiters.delete(check)
          reject(new Error(`timed out waiting for ${String(pattern)}; output:\n${out}\n${err}`))
        }, timeoutMs)
        const check = () => {
          const m = pattern.exec(out) ?? pattern.exec(err)
          if (m) {
            clearTimeout(timer)
            waiters.delete(check)
            resolve(m)
          } else if (code !== undefined) {
            clearTimeout(timer)
            waiters.delete(check)
            reject(
              new Error(
                `${command} exited (${String(code)}) before ${String(pattern)}:\n${out}\n${err}`,
              ),
            )
          }
        }
        waiters.add(check)
        check()
      })
    },
    async stop(signal = 'SIGTERM', graceMs = 3000) {
      if (code !== undefined) return code
      killGroup(child, signal)
      const timer = setTimeout(() => killGroup(child, 'SIGKILL'), graceMs)
      const c = await exited
      clearTimeout(timer)
      return c
    },
  }
  return managed
}

/** Kills every process started by {@link spawnProcess} that still runs. */
export async function killAllProcesses(): Promise<void> {
  const children = [...live]
  for (const child of children) killGroup(child, 'SIGKILL')
  await Promise.all(
    children.map((c) =>
      c.exitCode !== null || c.signalCode !== null
        ? undefined
        : new Promise((r) => c.once('exit', r)),
    ),
  )
}

/** Scheduler state letters of every thread of `pid` (`T` = stopped), from /proc. */
async function threadStates(pid: number): Promise<string[]> {
  const tasks = await readdir(`/proc/${pid}/task`)
  const states = await Promise.all(
    tasks.map(async (task) => {
      const stat = await readFile(`/proc/${pid}/task/${task}/stat`, 'utf8').catch(() => '')
      // "pid (comm) S ...": comm may hold spaces or parentheses; the state follows the last ')'
      const end = stat.lastIndexOf(')')
      return stat.slice(end + 2, end + 3)
    }),
  )
  return states.filter((s) => s !== '')
}

/**
 * Freezes process `pid` (SIGSTOP) and resolves once every one of its threads
 * is stopped. The kernel stops a multi-threaded process only when one of its
 * threads next runs, so on a busy machine it may go on working for a while
 * after the signal is sent; a test that pauses a server to see it silent
 * must wait for this.
 */
export async function pauseProcess(pid: number, timeoutMs = 10_000): Promise<void> {
  process.kill(pid, 'SIGSTOP')
  const deadline = Date.now() + timeoutMs
  for (;;) {
    const states = await threadStates(pid)
    // T/t: stopped; Z/X: a thread that is exiting runs no code either
    if (states.length > 0 && states.every((s) => 'TtZX'.includes(s))) return
    if (Date.now() > deadline) {
      throw new Error(
        `process ${pid} not stopped after ${timeoutMs} ms: threads ${states.join('')}`,
      )
    }
    await new Promise((resolve) => setTimeout(resolve, 5))
  }
}

/** Continues a process frozen by {@link pauseProcess} (SIGCONT). */
export function resumeProcess(pid: number): void {
  process.kill(pid, 'SIGCONT')
}

/** What {@link spawnReaper} cleans up once the test process is gone. */
export interface ReaperTargets {
  /** Process ids to SIGKILL. */
  readonly pids?: readonly number[]
  /** Process group ids to SIGKILL (`kill -9 -- -<pgid>`), e.g. of {@link spawnProcess} children. */
  readonly groups?: readonly number[]
  /** Files or directories to remove (`rm -rf`). */
  readonly paths?: readonly string[]
}

/** A running reaper; `cancel()` ends it without touching its targets. */
export interface Reaper {
  cancel(): void
}

/**
 * Starts a detached shell that waits for this process to end and then kills
 * `targets` and removes their files. It covers the one case the exit hooks do
 * not: the test process being SIGKILLed (for example by a timed-out runner),
 * which would otherwise leave servers running and temp dirs behind. Cancel it
 * once the targets are stopped normally.
 */
export function spawnReaper(targets: ReaperTargets): Reaper {
  const kills = [
    ...(targets.pids ?? []).map((pid) => `kill -9 ${pid}`),
    ...(targets.groups ?? []).map((pgid) => `kill -9 -- -${pgid}`),
  ]
  const script = [
    'while kill -0 "$1" 2>/dev/null; do sleep 1; done',
    ...kills.map((k) => `${k} 2>/dev/null`),
    'shift',
    '[ "$#" -gt 0 ] && rm -rf -- "$@"',
    'exit 0',
  ].join('\n')
  const dog = spawn('sh', ['-c', script, 'sh', String(process.pid), ...(targets.paths ?? [])], {
    detached: true,
    stdio: 'ignore',
  })
  dog.on('error', () => undefined)
  dog.unref()
  return {
    cancel() {
      try {
        dog.kill('SIGKILL')
      } catch {
        // already gone
      }
    },
  }
}
