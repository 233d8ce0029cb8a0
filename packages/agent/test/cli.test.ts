import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { FLAGS } from '@flannel/agent'

// The command as the end-to-end tests run it: from source through tsx.
const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const run = (...args: string[]) =>
  spawnSync(process.execPath, ['--conditions=@flannel/source', '--import', 'tsx', cli, ...args], {
    encoding: 'utf8',
    timeout: 30_000,
  })

describe('flannel-agent process', () => {
  it('--help lists every flag and exits 0', () => {
    const r = run('--help')
    expect(r.status).toBe(0)
    for (const f of FLAGS) expect(r.stdout).toContain(`--${f.name} `)
  })

  it.each([
    [['--bogus'], 'flag provided but not defined: -bogus'],
    [
      ['-subnet-lease-renew-margin=0'],
      'Invalid subnet-lease-renew-margin option, out of acceptable range',
    ],
  ])('%j exits 1 with one line', (args, line) => {
    const r = run(...args)
    expect(r.status).toBe(1)
    expect(r.stderr).toBe(`${line}\n`)
  })
})
