/**
 * flannel-agent vs real flanneld on bad command lines (core.md 6, 10.2):
 * same exit status and same message. flanneld runs inside a throwaway
 * network namespace. Skipped with a printed reason when no flanneld binary
 * is available.
 */
import { spawnSync } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Netns, findFlanneld, interopSkipReason, runPrefix } from '@flannel/testkit/flanneld'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-cli: skipped: ${skipReason}`)

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))

interface Outcome {
  readonly status: number | null
  /** The error message: the first stderr line, without klog's `E1123 07:51:15.78 27801 main.go:232] ` prefix. */
  readonly message: string
}

function outcome(r: { status: number | null; stderr: string }): Outcome {
  const first = r.stderr.split('\n').find((l) => !/^I\d{4} /.test(l)) ?? ''
  return { status: r.status, message: first.replace(/^[EWF]\d{4} [\d:.]+\s+\d+ \S+\] /, '') }
}

describe.skipIf(skipReason !== undefined)(
  `flannel-agent vs real flanneld command line${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let ns: Netns

    beforeAll(async () => {
      ns = await Netns.create(`${runPrefix()}-cli`)
    })

    afterAll(async () => {
      await ns?.destroy()
    })

    const theirs = (args: string[]): Outcome =>
      outcome(
        spawnSync('ip', ['netns', 'exec', ns.name, findFlanneld()!, ...args], {
          encoding: 'utf8',
          timeout: 10_000,
        }),
      )
    const ours = (args: string[]): Outcome =>
      outcome(
        spawnSync(
          process.execPath,
          ['--conditions=@flannel/source', '--import', 'tsx', cli, ...args],
          { encoding: 'utf8', timeout: 30_000 },
        ),
      )

    it.each([[['--subnet-lease-renew-margin=0']], [['-subnet-lease-renew-margin=1440']]])(
      '%j: same status and message',
      (args) => {
        const t = theirs(args)
        expect(t).toEqual({
          status: 1,
          message: 'Invalid subnet-lease-renew-margin option, out of acceptable range',
        })
        expect(ours(args)).toEqual(t)
      },
    )

    it('--version: both exit 0 with one version line on stderr', () => {
      const t = theirs(['--version'])
      const o = ours(['--version'])
      expect(t.status).toBe(0)
      expect(o.status).toBe(0)
      expect(t.message).toMatch(/^v\d+\.\d+\.\d+/)
      expect(o.message).toMatch(/^v\d+\.\d+\.\d+$/)
    })

    // Known difference (reported): flanneld v0.28.10 prints the flag error and
    // its usage text, then exits with status 0; flannel-agent exits 1 with one
    // line. Drop `.fails` if the agent is changed to match.
    it.fails.each([[['--bogus']], [['--iface']]])('%j: same status', (args) => {
      const t = theirs(args)
      console.info(`flanneld ${args.join(' ')}: status ${t.status}, ${t.message}`)
      expect(ours(args).status).toBe(t.status)
    })
  },
)
