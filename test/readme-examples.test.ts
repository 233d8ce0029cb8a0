/**
 * The TypeScript examples in the READMEs and docs compile against the
 * current API, strict, as complete modules: every ```ts block is one
 * program (a block marked ```ts fragment is a sketch and is left out), and
 * every package README's "Example" section starts with such a block.
 */
import { execFile } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const root = fileURLToPath(new URL('..', import.meta.url))

const packages = readdirSync(join(root, 'packages')).filter((d) => d !== 'testkit')
const documents = [
  'README.md',
  ...readdirSync(join(root, 'packages')).map((d) => `packages/${d}/README.md`),
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .map((f) => `docs/${f}`),
]

/** The ```ts blocks of a markdown text (not ```ts fragment), with their line numbers. */
function tsBlocks(text: string): { line: number; code: string }[] {
  const blocks: { line: number; code: string }[] = []
  const lines = text.split('\n')
  for (let i = 0; i < lines.length; i++) {
    if (lines[i] !== '```ts') continue
    const end = lines.indexOf('```', i + 1)
    blocks.push({ line: i + 1, code: lines.slice(i + 1, end).join('\n') })
    i = end
  }
  return blocks
}

describe('README and docs examples', () => {
  it.each(packages)(
    'packages/%s/README.md opens its Example section with a complete program',
    (dir) => {
      const text = readFileSync(join(root, 'packages', dir, 'README.md'), 'utf8')
      const section = text.slice(text.indexOf('\n## Example'))
      expect(section.length, 'an "## Example" section').toBeGreaterThan(0)
      const next = section.indexOf('\n## ', 1)
      expect(tsBlocks(next > 0 ? section.slice(0, next) : section).length).toBeGreaterThan(0)
    },
  )

  it('every ```ts block compiles (tsc --strict, each block a module)', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-readme-'))
    try {
      const files: string[] = []
      for (const doc of documents) {
        for (const { line, code } of tsBlocks(readFileSync(join(root, doc), 'utf8'))) {
          // the file name says where the block is: packages_core_README.md_L20.ts
          const name = `${doc.replace(/\//g, '_')}_L${line}.ts`
          await writeFile(join(dir, name), `${code}\nexport {}\n`)
          files.push(name)
        }
      }
      expect(files.length).toBeGreaterThan(10)
      await writeFile(
        join(dir, 'tsconfig.json'),
        JSON.stringify({
          extends: join(root, 'tsconfig.base.json'),
          compilerOptions: {
            noEmit: true,
            typeRoots: [join(root, 'node_modules', '@types')],
            paths: {
              '@flannel/testkit/*': [join(root, 'packages/testkit/src/*/index.ts')],
              // subpath exports: @flannel/core/registry -> packages/core/src/registry/index.ts
              '@flannel/core/*': [join(root, 'packages/core/src/*/index.ts')],
              '@flannel/linux/*': [join(root, 'packages/linux/src/*/index.ts')],
              '@flannel/*': [join(root, 'packages/*/src/index.ts')],
            },
          },
          files,
        }),
      )
      const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc')
      const errors = await run(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')]).then(
        () => '',
        (e: { stdout?: string }) => e.stdout ?? String(e),
      )
      expect(errors).toBe('')
    } finally {
      await rm(dir, { recursive: true, force: true })
    }
  }, 120_000)
})
