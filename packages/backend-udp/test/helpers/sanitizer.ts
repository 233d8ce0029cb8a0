/**
 * Builds of the addon's C sources with AddressSanitizer and UBSan for the
 * tests: the packet harness (test/native/harness.c) and a whole sanitized
 * addon that a udp node loads instead of build/Release/flannel_udp.node.
 */
import { execFile } from 'node:child_process'
import { readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { dirname, join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'

const run = promisify(execFile)
const PKG = fileURLToPath(new URL('../..', import.meta.url))
const NATIVE = join(PKG, 'native')
/** The pure packet code (no system calls): what the harness links. */
const PACKET_SOURCES = ['packet.c', 'tcpseg.c', 'peers.c'].map((f) => join(NATIVE, f))
/** The addon's sources, as binding.gyp lists them. */
const ADDON_SOURCES = (
  JSON.parse(readFileSync(join(PKG, 'binding.gyp'), 'utf8')) as {
    targets: { sources: string[] }[]
  }
).targets[0]!.sources.map((f) => join(PKG, f))

const CC = process.env.CC || 'cc'
const FLAGS = [
  '-std=gnu11',
  '-g',
  '-O1',
  '-Wall',
  '-Wextra',
  '-Wno-unused-parameter',
  '-fsanitize=address,undefined',
  '-fno-sanitize-recover=all',
  '-fno-omit-frame-pointer',
]

/** What a sanitizer report looks like in a process's stderr. */
export const SANITIZER_REPORT = /ERROR: (Address|Leak)Sanitizer|runtime error:/

/** Environment for a sanitized program: stop at the first report, with stacks. */
export const SANITIZER_ENV = {
  ASAN_OPTIONS: 'halt_on_error=1:abort_on_error=0:detect_leaks=1:strict_memcmp=1',
  UBSAN_OPTIONS: 'print_stacktrace=1:halt_on_error=1',
} as const

async function cc(args: readonly string[]): Promise<void> {
  try {
    await run(CC, [...args], { maxBuffer: 16 * 1024 * 1024 })
  } catch (error) {
    const e = error as { stderr?: string; message: string }
    throw new Error(`${CC} ${args.join(' ')}: ${e.stderr?.trim() || e.message}`)
  }
}

/**
 * Why sanitized builds cannot be made here (no C compiler, no ASan/UBSan
 * runtime), or undefined when they can: a tiny program is built and run.
 */
export async function sanitizersUnavailable(): Promise<string | undefined> {
  try {
    await run(CC, ['--version'])
  } catch {
    return `no C compiler (${CC})`
  }
  const dir = await mkdtemp(join(tmpdir(), 'flannel-udp-cc-'))
  try {
    const src = join(dir, 'probe.c')
    await writeFile(src, 'int main(void) { return 0; }\n')
    await cc([...FLAGS, src, '-o', join(dir, 'probe')])
    await run(join(dir, 'probe'), [], { env: { ...process.env, ...SANITIZER_ENV } })
    return undefined
  } catch (error) {
    const first = String(error).split('\n')[0]
    return `${CC} cannot build and run with -fsanitize=address,undefined (libasan/libubsan missing?): ${first}`
  } finally {
    await rm(dir, { recursive: true, force: true })
  }
}

/** Builds the packet harness into `dir`; returns the executable's path. */
export async function buildHarness(dir: string): Promise<string> {
  const out = join(dir, 'packet-harness')
  const harness = fileURLToPath(new URL('../native/harness.c', import.meta.url))
  await cc([...FLAGS, `-I${NATIVE}`, harness, ...PACKET_SOURCES, '-o', out, '-lpthread'])
  return out
}

/** A sanitized addon build and what a Node process needs to load it. */
export interface SanitizedAddon {
  /** The .node file. */
  readonly path: string
  /** Environment for the node process: the ASan runtime preloaded (Node itself is not instrumented). */
  readonly env: Record<string, string>
}

/**
 * Builds the whole addon with ASan and UBSan into `dir`. Node's own leaks
 * are not ours, so leak checking is off in the process that loads it.
 */
export async function buildSanitizedAddon(dir: string): Promise<SanitizedAddon> {
  const out = join(dir, 'flannel_udp_asan.node')
  const nodeInclude = join(dirname(dirname(process.execPath)), 'include', 'node')
  await cc([
    ...FLAGS,
    '-shared',
    '-fPIC',
    '-DNAPI_VERSION=8',
    `-I${nodeInclude}`,
    ...ADDON_SOURCES,
    '-o',
    out,
    '-lpthread',
  ])
  const { stdout } = await run(CC, ['-print-file-name=libasan.so'])
  return {
    path: out,
    env: {
      LD_PRELOAD: stdout.trim(),
      ASAN_OPTIONS: SANITIZER_ENV.ASAN_OPTIONS.replace('detect_leaks=1', 'detect_leaks=0'),
      UBSAN_OPTIONS: SANITIZER_ENV.UBSAN_OPTIONS,
      FLANNEL_UDP_TEST_ADDON: out,
    },
  }
}
