import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'
import { etcdMissingReason } from '@flannel/testkit/etcd'
import { netnsSkipReason } from '@flannel/testkit/netns'

const run = promisify(execFile)
const skip = (await netnsSkipReason()) ?? etcdMissingReason()
if (skip) console.warn(`examples/three-hosts-vxlan skipped: ${skip}`)

describe.skipIf(skip !== undefined)(
  `examples/three-hosts-vxlan (the demo)${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    it('leases three subnets, pings every pair, removes a leaving host and leaves nothing behind', async () => {
      const { stdout } = await runExample('three-hosts-vxlan/run.ts', { timeoutMs: 120_000 })
      const hosts = [...stdout.matchAll(/^ {3}(fk[0-9a-f]{4}h\d): eth0 192\.0\.2\.\d\/24$/gm)].map(
        (m) => m[1]!,
      )
      expect(hosts).toHaveLength(3)
      expect(stdout.match(/\/coreos\.com\/network\/subnets\/10\.244\.\d+\.0-24$/gm)).toHaveLength(3)
      const matrix = stdout.slice(stdout.indexOf('5. ping matrix'), stdout.indexOf('\n6. '))
      expect(matrix.match(/ok +[\d.]+ ms/g)).toHaveLength(6)
      expect(matrix).not.toContain('FAILED')
      expect(stdout).toMatch(/routes on flannel\.1 now 10\.244\.\d+\.0\/24\n/)
      expect(stdout).toContain('done: nothing left behind.')
      const { stdout: left } = await run('ip', ['netns', 'list'])
      for (const ns of hosts) expect(left).not.toContain(ns)
      expect(left).not.toContain(`${hosts[0]!.slice(0, 6)}sw`)
    }, 150_000)
  },
)
