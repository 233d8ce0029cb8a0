import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'
import { etcdMissingReason } from '@flannel/testkit/etcd'

const skip = etcdMissingReason()
if (skip) console.warn(`examples/simulate.ts test skipped: ${skip}`)

describe.skipIf(skip)(`examples/simulate.ts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('three hosts see each other, a deleted lease is removed everywhere', async () => {
    const { stdout } = await runExample('simulate.ts', { timeoutMs: 60_000 })
    for (const h of ['host-a', 'host-b', 'host-c']) {
      expect(stdout).toMatch(new RegExp(`${h}: ready, lease 10\\.5\\.\\d+\\.0/24 MTU 1500`))
    }
    // every host adds the two others
    expect(stdout.match(/: add peer /g)).toHaveLength(6)
    expect(stdout.match(/\{"PublicIP":"192\.0\.2\.1[123]","PublicIPv6":null\}/g)).toHaveLength(3)
    expect(stdout).toContain('host-c: stopped: LeaseRevokedError: Lease has been revoked')
    expect(stdout.match(/: remove peer .* via 192\.0\.2\.13/g)).toHaveLength(2)
    expect(stdout).toContain('done: all agents stopped, etcd stopped.')
  }, 90_000)
})
