/**
 * Compiles the TypeScript examples of the READMEs and docs against the
 * current API, strict, as complete modules: every ```ts block is one program
 * (a block marked ```ts fragment is a sketch and is left out).
 *
 * `scripts/test.sh` runs it beside the typecheck (`tsx test/readme-examples.ts`)
 * rather than inside the test runner: one strict compile of every package is
 * heavy, and next to the parallel test workers on a two-core machine it took
 * minutes.
 */
import { execFileSync } from 'node:child_process'
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'

const root = fileURLToPath(new URL('..', import.meta.url))

/** The documents whose ```ts blocks are programs, relative to the repository root. */
export function exampleDocuments(): string[] {
  return [
    'README.md',
    ...readdirSync(join(root, 'packages')).map((d) => `packages/${d}/README.md`),
    ...readdirSync(join(root, 'docs'))
      .filter((f) => f.endsWith('.md'))
      .map((f) => `docs/${f}`),
  ]
}

/** The ```ts blocks of a markdown text (not ```ts fragment), with their line numbers. */
export function tsBlocks(text: string): { line: number; code: string }[] {
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

/** Writes every block as a module and compiles them all; returns the count and tsc's output. */
export function compileExamples(): { blocks: number; errors: string } {
  const dir = mkdtempSync(join(tmpdir(), 'fl-readme-'))
  try {
    const files: string[] = []
    for (const doc of exampleDocuments()) {
      for (const { line, code } of tsBlocks(readFileSync(join(root, doc), 'utf8'))) {
        // the file name says where the block is: packages_core_README.md_L20.ts
        const name = `${doc.replace(/\//g, '_')}_L${line}.ts`
        writeFileSync(join(dir, name), `${code}\nexport {}\n`)
        files.push(name)
      }
    }
    writeFileSync(
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
    try {
      execFileSync(process.execPath, [tsc, '-p', join(dir, 'tsconfig.json')], { stdio: 'pipe' })
      return { blocks: files.length, errors: '' }
    } catch (err) {
      const out = (err as { stdout?: Buffer }).stdout?.toString()
      return { blocks: files.length, errors: out !== undefined && out !== '' ? out : String(err) }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const { blocks, errors } = compileExamples()
  if (errors !== '') {
    process.stdout.write(errors)
    console.error(`README examples: ${blocks} blocks, compile errors above`)
    process.exitCode = 1
  } else {
    console.log(`README examples: ${blocks} blocks compile (tsc --strict)`)
  }
}
