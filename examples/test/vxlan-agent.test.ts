/**
 * The README's custom agent (examples/vxlan-agent.ts) on a namespace host of
 * its own: eth0 with a TEST-NET address and the default route, etcd on the
 * namespace's loopback, the agent run there as the example is written.
 */
import { execFile, spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'
import { netnsPrefix, netnsSkipReason, nsExec } from '@flannel/testkit/netns'
import { createRequire } from 'node:module'
import { EXAMPLES_DIR } from './run-example.js'

const run = promisify(execFile)
const skip = etcdMissingReason() ?? (await netnsSkipReason())
if (skip) console.warn(`examples/vxlan-agent.ts test skipped: ${skip}`)

describe.skipIf(skip)(`examples/vxlan-agent.ts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  const ns = `${netnsPrefix()}-vxa`
  let etcd: EtcdServer | undefined
  let dir = ''
  beforeAll(async () => {
    dir = await mkdtemp(join(tmpdir(), 'flex-vxlan-'))
    await run('ip', ['netns', 'add', ns])
    for (const args of [
      ['link', 'set', 'lo', 'up'],
      ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'eth1'],
      ['addr', 'add', '192.0.2.10/24', 'dev', 'eth0'],
      ['link', 'set', 'eth0', 'up'],
      ['link', 'set', 'eth1', 'up'],
      ['route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'eth0', 'onlink'],
    ]) {
      await nsExec(ns, 'ip', args)
    }
    etcd = await startEtcd({ netns: ns, clientPort: 2379 })
    await etcd.etcdctl(
      'put',
      '/coreos.com/network/config',
      '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}',
    )
  }, 60_000)
  afterAll(async () => {
    await etcd?.stop()
    await run('ip', ['netns', 'del', ns]).catch(() => undefined)
    await rm(dir, { recursive: true, force: true })
  })

  it('gets a lease, creates flannel.1 on eth0, writes subnet.env and stops on SIGINT with exit 0', async () => {
    // Run from a scratch directory (the example writes ./subnet.env), tsx found from the examples.
    const file = join(EXAMPLES_DIR, 'vxlan-agent.ts')
    const tsx = createRequire(join(EXAMPLES_DIR, 'package.json')).resolve('tsx')
    const args = ['--conditions=@flannel/source', '--import', tsx, file]
    const child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], { cwd: dir })
    let out = ''
    let err = ''
    child.stderr.on('data', (d: Buffer) => (err += d.toString()))
    const exited = new Promise<number | null>((resolve) => child.once('exit', resolve))
    await new Promise<void>((resolve, reject) => {
      child.stdout.on('data', (d: Buffer) => {
        out += d.toString()
        if (out.includes('ready:')) resolve()
      })
      void exited.then(() => reject(new Error(`example exited early: ${out}${err}`)))
    })
    expect(out).toMatch(/ready: lease 10\.5\.\d+\.0\/24, MTU 1450/)
    const env = await readFile(join(dir, 'subnet.env'), 'utf8')
    expect(env).toMatch(/^FLANNEL_NETWORK=10\.5\.0\.0\/16\nFLANNEL_SUBNET=10\.5\.\d+\.1\/24\n/)
    const link = await nsExec(ns, 'ip', ['-d', 'link', 'show', 'flannel.1'])
    expect(link).toMatch(/vxlan id 1 local 192\.0\.2\.10 dev eth0/)
    child.kill('SIGINT')
    expect(await exited).toBe(0)
  }, 60_000)
})
