import { mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  MemoryRegistry,
  isFlannelError,
  silentLogger,
  type ExternalInterface,
  type SubnetRegistry,
} from '@flannel/core'
import { alloc } from '@flannel/backend-alloc'
import { optionsFromFlags, startAgentCommand, type AgentCommand } from '@flannel/agent'
import { FakeRegistry, FakeTimers } from '../../core/test/agent-fakes.js'

const ext: ExternalInterface = {
  name: 'eth0',
  index: 2,
  mtu: 1500,
  ifaceAddr: '192.0.2.10',
  extAddr: '192.0.2.10',
}

let dir: string
let command: AgentCommand | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flannel-cmd-'))
})
afterEach(async () => {
  command?.stop()
  await command?.done
  command = undefined
  await rm(dir, { recursive: true, force: true })
})

async function until(cond: () => boolean | Promise<boolean>, timers?: FakeTimers): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 10))
    // the agent's config retries wait on its (fake) clock
    if (timers !== undefined && i % 5 === 4) await timers.advance(1000)
  }
  throw new Error('condition not reached')
}

describe('flannel-agent command in-process (alloc backend)', () => {
  it('serves /healthz, /readyz (503 then 200) and /metrics', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'alloc' } },
      timers,
    )
    registry.configMisses = 1_000_000
    command = await startAgentCommandOnFreePort(registry, timers)
    const url = command.healthUrl!
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/)
    const healthz = await fetch(`${url}/healthz`)
    expect(healthz.status).toBe(200)
    expect(await healthz.text()).toBe('flanneld is running')
    expect((await fetch(`${url}/readyz`)).status).toBe(503)

    registry.configMisses = 0
    await until(async () => (await fetch(`${url}/readyz`)).status === 200, timers)
    expect(await readFile(join(dir, 'subnet.env'), 'utf8')).toContain('FLANNEL_MTU=1500\n')

    registry.addPeer('10.5.200.0/24', '192.0.2.30')
    const metrics = await (await fetch(`${url}/metrics`)).text()
    for (const name of [
      'flannel_leases_known',
      'flannel_events_applied_total',
      'flannel_apply_latency_seconds',
      'flannel_registry_errors_total',
      'flannel_lease_renewals_total',
    ]) {
      expect(metrics).toContain(`# TYPE ${name}`)
    }
    expect((await fetch(`${url}/nope`)).status).toBe(404)
  })

  it('on MemoryRegistry: ready over HTTP, subnet.env written, stop keeps the lease', async () => {
    const timers = new FakeTimers()
    const registry = new MemoryRegistry('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}', {
      clock: () => timers.now(),
    })
    try {
      command = await startAgentCommandOnFreePort(registry, timers)
      await until(async () => (await fetch(`${command!.healthUrl}/readyz`)).status === 200)
      const env = await readFile(join(dir, 'subnet.env'), 'utf8')
      expect(env).toMatch(/^FLANNEL_NETWORK=10\.5\.0\.0\/16\nFLANNEL_SUBNET=10\.5\.\d+\.1\/24\n/)
      const metrics = await (await fetch(`${command.healthUrl}/metrics`)).text()
      expect(metrics).toContain('flannel_lease_renewals_total{result="ok"} 0')
      command.stop()
      expect(await command.done).toEqual({ code: 0 })
      const { lease } = await new Promise<{ lease: unknown }>((resolve) => {
        const sub = registry.watchLeases().subscribe((batch) => {
          resolve({ lease: batch[0]?.lease })
          queueMicrotask(() => sub.unsubscribe())
        })
      })
      expect(lease).toBeDefined()
    } finally {
      await registry.close()
    }
  })

  it('counts renewals in /metrics', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'alloc' } },
      timers,
    )
    command = await startAgentCommandOnFreePort(registry, timers)
    await until(() => command!.isReady())
    await timers.advance(23 * 60 * 60_000)
    const metrics = await (await fetch(`${command.healthUrl}/metrics`)).text()
    expect(metrics).toContain('flannel_lease_renewals_total{result="ok"} 1')
  })

  it('stop() ends with code 0 and keeps lease and subnet.env', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'alloc' } },
      timers,
    )
    command = await startAgentCommandOnFreePort(registry, timers)
    await until(() => command!.isReady())
    command.stop()
    expect(await command.done).toEqual({ code: 0 })
    expect(registry.leases.size).toBe(1)
    expect(registry.watchers.size).toBe(0)
    expect(timers.count).toBe(0)
    await stat(join(dir, 'subnet.env'))
    await expect(fetch(`${command.healthUrl}/healthz`)).rejects.toThrow()
  })

  it('a bad config is retried every second, leaving no lease, until it is fixed', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'alloc' } },
      timers,
    )
    registry.badConfig = '{"Network":"10.1.0.0/29","Backend":{"Type":"alloc"}}'
    let reads = 0
    const read = registry.getNetworkConfig.bind(registry)
    registry.getNetworkConfig = () => {
      reads++
      return read()
    }
    command = await startAgentCommandOnFreePort(registry, timers)
    await until(() => reads >= 2, timers)
    expect(command.isReady()).toBe(false)
    expect(registry.leases.size).toBe(0)
    registry.badConfig = undefined
    await until(() => command!.isReady(), timers)
    expect(registry.leases.size).toBe(1)
  })

  it('an unknown backend type ends with code 1, leaving no lease and no subnet.env', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'bogus' } },
      timers,
    )
    command = await startAgentCommandOnFreePort(registry, timers)
    expect(await command.done).toEqual({
      code: 1,
      reason: 'Error registering network: unknown backend type: bogus',
    })
    expect(registry.leases.size).toBe(0)
    await expect(stat(join(dir, 'subnet.env'))).rejects.toThrow()
  })

  it('a revoked lease ends with code 0 and flanneld text, as flanneld exits cleanly', async () => {
    const timers = new FakeTimers()
    const registry = new FakeRegistry(
      { Network: '10.5.0.0/16', Backend: { Type: 'alloc' } },
      timers,
    )
    command = await startAgentCommandOnFreePort(registry, timers)
    await until(() => command!.isReady())
    registry.remove([...registry.leases.keys()][0]!)
    expect(await command.done).toEqual({
      code: 0,
      reason: 'Lease has been revoked. Shutting down daemon.',
    })
  })
})

describe('flannel-agent --kube-subnet-mgr start-up failures (flanneld messages, no API server needed)', () => {
  const kubeStart = async (extra: string[], env: Record<string, string>) => {
    const netConf = join(dir, 'net-conf.json')
    const { writeFile } = await import('node:fs/promises')
    await writeFile(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}')
    const options = optionsFromFlags(
      [
        '--kube-subnet-mgr',
        // Never contacted: every case fails before the first request.
        '--kube-api-url=https://127.0.0.1:9',
        `--net-config-path=${netConf}`,
        `--subnet-file=${join(dir, 'subnet.env')}`,
        ...extra,
      ],
      {},
    )
    command = await startAgentCommand(options, {
      extIface: ext,
      hostRules: false,
      logger: silentLogger,
      env,
    })
    return command.done
  }

  it.each([
    [
      'a bad annotation prefix',
      ['--kube-annotation-prefix=org.COM'],
      { NODE_NAME: 'n1' },
      'Failed to create SubnetManager: error creating network manager: subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*',
    ],
    [
      'no NODE_NAME and no pod',
      [],
      {},
      'Failed to create SubnetManager: env variables POD_NAME and POD_NAMESPACE must be set',
    ],
    [
      'a missing net-conf.json',
      ['--net-config-path=/nonexistent/net-conf.json'],
      { NODE_NAME: 'n1' },
      'Failed to create SubnetManager: failed to read net conf: open /nonexistent/net-conf.json: no such file or directory',
    ],
    [
      'a non-integer EVENT_QUEUE_DEPTH',
      [],
      { NODE_NAME: 'n1', EVENT_QUEUE_DEPTH: 'x' },
      'Failed to create SubnetManager: error creating network manager: env EVENT_QUEUE_DEPTH=x format error: strconv.Atoi: parsing "x": invalid syntax',
    ],
  ])('%s ends with code 1 and flanneld text', async (_what, extra, env, reason) => {
    expect(await kubeStart(extra, env)).toEqual({ code: 1, reason })
  })

  it('a net-conf.json that does not parse', async () => {
    const bad = join(dir, 'bad.json')
    const { writeFile } = await import('node:fs/promises')
    await writeFile(bad, '{"Network":"10.244.0.0/16","SubnetLen":"x"}')
    const result = await kubeStart([`--net-config-path=${bad}`], { NODE_NAME: 'n1' })
    expect(result.code).toBe(1)
    expect(result.reason).toMatch(/^Failed to create SubnetManager: error parsing subnet config: /)
  })
})

async function startAgentCommandOnFreePort(
  registry: SubnetRegistry,
  timers: FakeTimers,
  extra: string[] = [],
): Promise<AgentCommand> {
  const { freePort } = await import('@flannel/testkit/http')
  const port = await freePort()
  const options = optionsFromFlags(
    [
      '--healthz-ip=127.0.0.1',
      `--healthz-port=${port}`,
      `--subnet-file=${join(dir, 'subnet.env')}`,
      ...extra,
    ],
    {},
  )
  return startAgentCommand(options, {
    registry,
    extIface: ext,
    hostRules: false,
    backends: [alloc()],
    logger: silentLogger,
    timers,
  })
}

describe('BACKENDS', () => {
  it("lists one lazy factory per backend type, each creating its own package's backend", async () => {
    const { BACKENDS } = await import('@flannel/agent')
    const { lookupBackend } = await import('@flannel/core')
    expect(BACKENDS.map((f) => f.type).sort()).toEqual(
      ['ali-vpc', 'alloc', 'aws-vpc', 'gce', 'host-gw', 'udp', 'vxlan'].sort(),
    )
    const backend = await lookupBackend('alloc', BACKENDS).create({
      registry: new MemoryRegistry('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}'),
      extIface: ext,
    })
    expect(backend.type).toBe('alloc')
    expect(backend.constructor.name).toBe('AllocBackend')
  })

  it('names the package when a configured backend cannot be loaded', async () => {
    const { lazyBackend } = await import('@flannel/agent')
    const registry = new MemoryRegistry('{"Network":"10.5.0.0/16","Backend":{"Type":"mine"}}')
    const missing = lazyBackend('mine', { package: 'flannel-backend-not-there', factory: 'mine' })
    const err = await Promise.resolve(missing.create({ registry, extIface: ext })).catch(
      (e: unknown) => e,
    )
    expect(isFlannelError(err, 'BACKEND_UNAVAILABLE')).toBe(true)
    expect((err as Error).message).toBe(
      'backend type "mine" needs the package flannel-backend-not-there, which could not be loaded: it is not installed (npm install flannel-backend-not-there)',
    )
    const wrong = lazyBackend('mine', { package: '@flannel/backend-alloc', factory: 'mine' })
    await expect(Promise.resolve(wrong.create({ registry, extIface: ext }))).rejects.toThrow(
      'backend type "mine" needs the package @flannel/backend-alloc, which could not be loaded: it does not export the factory mine()',
    )
    expect(() => lazyBackend('nope')).toThrow('no package serves this type')
  })
})
