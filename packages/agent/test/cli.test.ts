import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { describe, expect, it } from 'vitest'
import { readFileSync } from 'node:fs'
import { AGENT_VERSION, FLAGS } from '@flannel/agent'

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

  it('--version prints the package version to stderr and exits 0, as flanneld', () => {
    const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as {
      version: string
    }
    expect(AGENT_VERSION).toBe(pkg.version)
    const r = run('--version')
    expect(r.status).toBe(0)
    expect(r.stderr).toBe(`v${pkg.version}\n`)
    expect(r.stdout).toBe('')
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
