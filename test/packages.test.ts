/**
 * The published packages as a consumer gets them: the built `dist` reached
 * through each package's `exports` map (no `@flannel/source` condition), from
 * ESM and from CommonJS, exports the same names as the source; the type
 * declarations resolve for both; the packed tarball holds only dist, README,
 * LICENSE and package.json (plus the udp addon's sources, compiled at
 * install); the `flannel-agent` bin runs from dist. Needs the
 * packages built (the README's test command builds them); skipped with the
 * reason otherwise.
 */
import { execFile } from 'node:child_process'
import { existsSync, readFileSync } from 'node:fs'
import { mkdir, mkdtemp, rm, symlink, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

/** Every published package: folder, and one exported symbol a consumer would use. */
const PACKAGES = [
  ['core', 'parseNetworkConfig'],
  ['registry-etcd', 'EtcdRegistry'],
  ['registry-kube', 'KubeRegistry'],
  ['linux', 'NetlinkHostNetwork'],
  ['backend-vxlan', 'VxlanBackend'],
  ['backend-hostgw', 'HostGwBackend'],
  ['backend-udp', 'UdpBackend'],
  ['backend-alloc', 'AllocBackend'],
  ['backend-aws', 'AwsVpcBackend'],
  ['backend-gce', 'GceBackend'],
  ['backend-ali', 'AliVpcBackend'],
  ['agent', 'startAgentCommand'],
] as const

interface Manifest {
  name: string
  private?: boolean
  main: string
  module: string
  types: string
  files: string[]
  bin?: Record<string, string>
  exports: Record<string, unknown>
}

const manifest = (dir: string): Manifest =>
  JSON.parse(readFileSync(join(root, 'packages', dir, 'package.json'), 'utf8')) as Manifest

const unbuilt = PACKAGES.filter(([dir]) => !existsSync(join(root, 'packages', dir, 'dist')))
const skip =
  unbuilt.length > 0
    ? `not built: ${unbuilt.map(([d]) => d).join(', ')} (run pnpm build)`
    : undefined
if (skip) console.warn(`package checks skipped: ${skip}`)

describe.skipIf(skip !== undefined)(
  `published packages${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    // A consumer project: node_modules/@flannel/<name> links to the package
    // folders, so resolution goes through each package.json's exports map.
    let consumer: string
    beforeAll(async () => {
      consumer = await mkdtemp(join(tmpdir(), 'fl-consumer-'))
      await mkdir(join(consumer, 'node_modules', '@flannel'), { recursive: true })
      for (const [dir] of PACKAGES) {
        await symlink(
          join(root, 'packages', dir),
          join(consumer, 'node_modules', manifest(dir).name),
        )
      }
    })
    afterAll(async () => {
      if (consumer) await rm(consumer, { recursive: true, force: true })
    })

    const exportedNames = async (name: string, how: 'import' | 'require'): Promise<string[]> => {
      const code =
        how === 'import'
          ? `import(${JSON.stringify(name)}).then((m) => console.log(JSON.stringify(Object.keys(m).sort())))`
          : `console.log(JSON.stringify(Object.keys(require(${JSON.stringify(name)})).sort()))`
      const { stdout } = await run(process.execPath, ['-e', code], { cwd: consumer })
      return JSON.parse(stdout) as string[]
    }

    it.each(PACKAGES)('%s: the exports map puts types first and names files that exist', (dir) => {
      const m = manifest(dir)
      expect(m.private).not.toBe(true)
      const dot = m.exports['.'] as Record<string, Record<string, string>>
      for (const how of ['import', 'require'] as const) {
        expect(Object.keys(dot[how]!)[0], `${how} condition`).toBe('types')
        for (const file of Object.values(dot[how]!)) {
          expect(existsSync(join(root, 'packages', dir, file)), file).toBe(true)
        }
      }
      for (const file of [m.main, m.module, m.types]) {
        expect(existsSync(join(root, 'packages', dir, file)), file).toBe(true)
      }
      expect(m.files).toEqual(expect.arrayContaining(['dist', 'README.md']))
    })

    it.each(PACKAGES)(
      '%s: dist exports the source names from ESM and from CommonJS',
      async (dir, symbol) => {
        const name = manifest(dir).name
        const source = Object.keys((await import(name)) as object).sort()
        expect(source).toContain(symbol)
        expect(await exportedNames(name, 'import')).toEqual(source)
        expect(await exportedNames(name, 'require')).toEqual(source)
      },
      30_000,
    )

    /** What a tarball may hold besides dist, README.md, LICENSE and package.json. */
    const EXTRA: Record<string, RegExp> = {
      // the addon is compiled at install from its own sources (never a prebuilt .node)
      'backend-udp': /^(binding\.gyp|native\/\w+\.[ch]|scripts\/build-addon\.mjs)$/,
    }

    it.each(PACKAGES)(
      '%s: the packed tarball holds only dist, README.md, LICENSE (Apache-2.0), package.json and what it builds at install',
      async (dir) => {
        const { stdout } = await run('pnpm', ['pack', '--dry-run'], {
          cwd: join(root, 'packages', dir),
        })
        const files = stdout
          .split('\n')
          .slice(stdout.split('\n').indexOf('Tarball Contents') + 1)
          .filter((l) => l !== '' && !l.startsWith('Tarball Details') && !l.includes('.tgz'))
        expect(files).toContain('package.json')
        expect(files).toContain('README.md')
        expect(files).toContain('LICENSE')
        // the package's copy of the license is the repository's, byte for byte
        expect(readFileSync(join(root, 'packages', dir, 'LICENSE'), 'utf8')).toBe(
          readFileSync(join(root, 'LICENSE'), 'utf8'),
        )
        const extra = EXTRA[dir]
        for (const f of files) {
          if (!extra?.test(f)) {
            expect(f, f).toMatch(/^(dist\/|package\.json$|README\.md$|LICENSE$)/)
          }
        }
        if (extra) {
          for (const f of ['binding.gyp', 'scripts/build-addon.mjs', 'native/addon.c']) {
            expect(files).toContain(f)
          }
        }
      },
    )

    it('the type declarations resolve for ESM and CommonJS consumers (tsc, node16)', async () => {
      const imports = PACKAGES.map(
        ([dir, symbol]) => `import { ${symbol} } from '${manifest(dir).name}'`,
      )
      const uses = `export const used = [${PACKAGES.map(([, s]) => s).join(', ')}]`
      await writeFile(join(consumer, 'esm.mts'), `${imports.join('\n')}\n${uses}\n`)
      await writeFile(join(consumer, 'cjs.cts'), `${imports.join('\n')}\n${uses}\n`)
      await writeFile(
        join(consumer, 'tsconfig.json'),
        JSON.stringify({
          compilerOptions: {
            strict: true,
            module: 'node16',
            moduleResolution: 'node16',
            target: 'es2022',
            noEmit: true,
            skipLibCheck: true,
            types: ['node'],
            typeRoots: [join(root, 'node_modules', '@types')],
          },
          files: ['esm.mts', 'cjs.cts'],
        }),
      )
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
      const result = await run(process.execPath, [tsc, '-p', 'tsconfig.json'], {
        cwd: consumer,
      }).then(
        () => 'ok',
        (e: { stdout?: string }) => e.stdout ?? String(e),
      )
      expect(result).toBe('ok')
    }, 60_000)

    it('the flannel-agent bin runs from dist', async () => {
      const bin = manifest('agent').bin!['flannel-agent']!
      const cli = join(root, 'packages', 'agent', bin)
      const help = await run(process.execPath, [cli, '--help'])
      expect(help.stdout).toContain('--etcd-endpoints')
      const version = await run(process.execPath, [cli, '--version'])
      expect(version.stderr).toBe(
        `v${JSON.parse(readFileSync(join(root, 'packages', 'agent', 'package.json'), 'utf8')).version}\n`,
      )
    })
  },
)
