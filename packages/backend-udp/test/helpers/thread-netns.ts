/**
 * Moves the test's own thread into a network namespace the test created, so
 * that the udp datapath (TUN device, UDP socket) can be opened in-process
 * there while the host-side state goes to a `MemoryHostNetwork`. Built from
 * test/native/netns.c with the C compiler, as the sanitized builds are.
 */
import { execFile } from 'node:child_process'
import { createRequire } from 'node:module'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const CC = process.env.CC || 'cc'

interface NetnsAddon {
  enter(path: string): number
  leave(fd: number): void
}

/** The calling thread inside a namespace; {@link ThreadInNetns.leave} takes it back. */
export interface ThreadInNetns {
  /** Back to the namespace the thread was in (idempotent). */
  leave(): void
}

/** Why the helper cannot be built here (no C compiler, no Node headers), or undefined. */
export async function threadNetnsUnavailable(): Promise<string | undefined> {
  try {
    await run(CC, ['--version'])
  } catch {
    return `no C compiler (${CC})`
  }
  return undefined
}

/**
 * Builds the helper (into a temporary directory, removed at once: the
 * loaded library stays mapped) and moves this thread into `/run/netns/<ns>`.
 */
export async function enterNetns(ns: string): Promise<ThreadInNetns> {
  const dir = await mkdtemp(join(tmpdir(), 'flannel-udp-netns-'))
  let addon: NetnsAddon
  try {
    const out = join(dir, 'netns.node')
    const src = fileURLToPath(new URL('../native/netns.c', import.meta.url))
    const include = join(dirname(dirname(process.execPath)), 'include', 'node')
    await run(CC, [
      '-std=gnu11',
      '-O1',
      '-Wall',
      '-shared',
      '-fPIC',
      `-I${include}`,
      src,
      '-o',
      out,
    ])
    addon = createRequire(import.meta.url)(out) as NetnsAddon
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
  let fd: number | undefined = addon.enter(`/run/netns/${ns}`)
  return {
    leave: () => {
      if (fd === undefined) return
      addon.leave(fd)
      fd = undefined
    },
  }
}
