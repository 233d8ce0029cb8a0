/**
 * Every package README's "Example" section starts with a complete program (a
 * ```ts block, which `test/readme-examples.ts` compiles beside the typecheck),
 * and the documents hold enough of them for that compile to mean something.
 */
import { readdirSync, readFileSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { exampleDocuments, tsBlocks } from './readme-examples.js'

const root = fileURLToPath(new URL('..', import.meta.url))
const packages = readdirSync(join(root, 'packages')).filter((d) => d !== 'testkit')

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

  it('the documents hold more than ten ```ts programs for the example compile', () => {
    const blocks = exampleDocuments().flatMap((doc) =>
      tsBlocks(readFileSync(join(root, doc), 'utf8')),
    )
    expect(blocks.length).toBeGreaterThan(10)
  })
})
