import { spawn } from 'node:child_process'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'
import { EXAMPLE_NODE_ARGS, EXAMPLES_DIR } from './run-example.js'

const skip = etcdMissingReason()
if (skip) console.warn(`examples/custom-agent.ts test skipped: ${skip}`)

describe.skipIf(skip)(`examples/custom-agent.ts${skip ? ` (skipped: ${skip})` : ''}`, () => {
  let etcd: EtcdServer
  let dir: string
  beforeAll(async () => {
    etcd = await startEtcd()
    dir = await mkdtemp(join(tmpdir(), 'flex-'))
    await etcd.etcdctl(
      'put',
      '/coreos.com/network/config',
      '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}',
    )
  }, 30_000)
  afterAll(async () => {
    await etcd?.stop()
    await rm(dir, { recursive: true, force: true })
  })

  it('gets a lease, writes subnet.env and stops on SIGINT with exit 0', async () => {
    const child = spawn(process.execPath, [...EXAMPLE_NODE_ARGS, 'custom-agent.ts'], {
      cwd: EXAMPLES_DIR,
      env: {
        ...process.env,
        ETCD_ENDPOINTS: etcd.endpoints.join(','),
        PUBLIC_IP: '192.0.2.10',
        SUBNET_FILE: join(dir, 'subnet.env'),
      },
    })
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
    expect(out).toMatch(/ready: lease 10\.5\.\d+\.0\/24, MTU 1500/)
    const env = await readFile(join(dir, 'subnet.env'), 'utf8')
    expect(env).toMatch(/^FLANNEL_NETWORK=10\.5\.0\.0\/16\nFLANNEL_SUBNET=10\.5\.\d+\.1\/24\n/)
    const keys = await etcd.etcdctl(
      'get',
      '--prefix',
      '--keys-only',
      '/coreos.com/network/subnets/',
    )
    expect(keys).toMatch(/\/coreos\.com\/network\/subnets\/10\.5\.\d+\.0-24/)
    child.kill('SIGINT')
    expect(await exited).toBe(0)
    expect(out).toContain('stopped')
  }, 60_000)
})
