import { existsSync } from 'node:fs'
import { randomBytes } from 'node:crypto'
import { execFile } from 'node:child_process'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason, etcdctlMissingReason, startEtcd } from '@flannel/testkit/etcd'
import type { EtcdServer } from '@flannel/testkit/etcd'

const run = promisify(execFile)
const missing = etcdMissingReason()
if (missing) console.warn(`etcd launcher tests skipped: ${missing}`)

describe.skipIf(missing !== undefined)(
  `testkit etcd launcher${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let etcd: EtcdServer
    beforeAll(async () => {
      etcd = await startEtcd()
    })
    afterAll(async () => {
      await etcd?.stop()
    })

    it('serves on a loopback port and keeps data across kill and restart', async () => {
      expect(etcd.endpoints[0]).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
      const client = etcd.connect()
      await client.put('/launcher/k').value('v1')
      const pidBefore = etcd.pid
      await etcd.kill()
      expect(etcd.running).toBe(false)
      await etcd.restart()
      expect(etcd.running).toBe(true)
      expect(etcd.pid).not.toBe(pidBefore)
      expect(await client.get('/launcher/k').string()).toBe('v1')
    })

    it('pause freezes the server until resume', async () => {
      const client = etcd.connect()
      await etcd.pause()
      let frozen: string
      try {
        frozen = await client
          .get('/launcher/k')
          .options({ deadline: Date.now() + 300 })
          .string()
          .then(
            () => 'answered',
            () => 'timed out',
          )
      } finally {
        etcd.resume()
      }
      expect(frozen).toBe('timed out')
      // a fresh client: etcd3's default circuit breaker keeps the old one closed for 5 s
      expect(await etcd.connect().get('/launcher/k').string()).toBe('v1')
    })

    it.skipIf(etcdctlMissingReason() !== undefined)('runs etcdctl against the server', async () => {
      await etcd.etcdctl('put', '/launcher/ctl', 'x')
      expect((await etcd.etcdctl('get', '--print-value-only', '/launcher/ctl')).trim()).toBe('x')
    })

    it('stop kills the process and removes the directory', async () => {
      const other = await startEtcd()
      const pid = other.pid
      expect(existsSync(other.dir)).toBe(true)
      await other.stop()
      expect(existsSync(other.dir)).toBe(false)
      expect(() => process.kill(pid!, 0)).toThrow()
    })
  },
)

const netnsMissing =
  missing ?? (process.getuid?.() !== 0 ? 'network namespaces need root' : undefined)
describe.skipIf(netnsMissing !== undefined)(
  `testkit etcd launcher in a network namespace${netnsMissing ? ` (skipped: ${netnsMissing})` : ''}`,
  () => {
    it('listens on an address inside the namespace', async () => {
      const ns = `fl${randomBytes(2).toString('hex')}e`
      await run('ip', ['netns', 'add', ns])
      let etcd: EtcdServer | undefined
      try {
        await run('ip', ['-n', ns, 'link', 'set', 'lo', 'up'])
        await run('ip', ['-n', ns, 'link', 'add', `${ns}b`, 'type', 'bridge'])
        await run('ip', ['-n', ns, 'addr', 'add', '192.0.2.10/24', 'dev', `${ns}b`])
        await run('ip', ['-n', ns, 'link', 'set', `${ns}b`, 'up'])
        etcd = await startEtcd({ netns: ns, host: '192.0.2.10' })
        expect(etcd.endpoints[0]).toMatch(/^http:\/\/192\.0\.2\.10:\d+$/)
        if (etcdctlMissingReason() === undefined) {
          await etcd.etcdctl('put', '/ns/k', 'v')
          expect((await etcd.etcdctl('get', '--print-value-only', '/ns/k')).trim()).toBe('v')
        }
      } finally {
        await etcd?.stop()
        await run('ip', ['netns', 'del', ns])
      }
    })
  },
)
