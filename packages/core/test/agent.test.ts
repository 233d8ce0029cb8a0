import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NEVER, Observable, map, mergeMap, from, type Subscription } from 'rxjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  Agent,
  InvalidArgumentError,
  Ip4Net,
  defineBackend,
  MemoryRegistry,
  isFlannelError,
  silentLogger,
  writeSubnetEnv,
  type AgentEvent,
  type Backend,
  type BackendContext,
  type ExternalInterface,
  type Lease,
  type LeaseEvent,
  type Network,
  type NetworkEvent,
  type NetworkConfig,
  type PreparedNetwork,
  type RegisterOptions,
} from '@flannel/core'
import { FakeRegistry, FakeTimers, settle, waitFor } from './agent-fakes.js'

const ext: ExternalInterface = {
  name: 'eth0',
  index: 2,
  mtu: 1500,
  ifaceAddr: '192.0.2.10',
  extAddr: '192.0.2.10',
}
const HOUR = 60 * 60_000

/** A backend that acquires a lease and reports every peer event it gets as applied. */
class RecordingBackend implements Backend {
  readonly type = 'rec'
  runs = 0
  active = 0
  received: LeaseEvent[][] = []
  constructor(private readonly ctx: BackendContext) {}
  async registerNetwork(_config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    const lease = await this.ctx.registry.acquireLease(
      { publicIP: this.ctx.extIface.extAddr! },
      { previous: opts.previous },
    )
    return {
      lease,
      mtu: 1450,
      run: (events: Observable<LeaseEvent[]>): Observable<NetworkEvent> =>
        new Observable<LeaseEvent[]>((sub) => {
          this.runs++
          this.active++
          const inner = events.subscribe(sub)
          return () => {
            this.active--
            inner.unsubscribe()
          }
        }).pipe(
          mergeMap((batch) => {
            this.received.push(batch)
            return from(batch)
          }),
          map(
            (e): NetworkEvent => ({
              type: 'applied',
              action: e.type === 'added' ? 'add' : 'remove',
              lease: e.lease,
            }),
          ),
        ),
    }
  }
}

let dir: string
let timers: FakeTimers
let registry: FakeRegistry
let backend: RecordingBackend | undefined
let sub: Subscription | undefined

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flannel-agent-'))
  timers = new FakeTimers()
  registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'rec' } }, timers)
  backend = undefined
})
afterEach(async () => {
  sub?.unsubscribe()
  sub = undefined
  await rm(dir, { recursive: true, force: true })
})

function makeAgent(extra: Partial<ConstructorParameters<typeof Agent>[0]> = {}): Agent {
  return new Agent({
    registry,
    extIface: ext,
    subnetFile: join(dir, 'subnet.env'),
    timers,
    backends: [defineBackend('rec', (ctx) => (backend = new RecordingBackend(ctx)))],
    ...extra,
  })
}

function start(agent: Agent, signal?: AbortSignal) {
  const events: AgentEvent[] = []
  const result: { error?: unknown; completed: boolean } = { completed: false }
  sub = agent.run({ signal }).subscribe({
    next: (e) => events.push(e),
    error: (e: unknown) => (result.error = e),
    complete: () => (result.completed = true),
  })
  return { events, result }
}

describe('Agent start-up', () => {
  it('registers, writes subnet.env, then reports ready and runs the network', async () => {
    const agent = makeAgent({ ipMasq: true })
    const { events } = start(agent)
    await waitFor(() => agent.status === 'running')
    expect(events.map((e) => e.type).slice(0, 2)).toEqual(['registered', 'ready'])
    expect(await readFile(join(dir, 'subnet.env'), 'utf8')).toBe(
      'FLANNEL_NETWORK=10.5.0.0/16\nFLANNEL_SUBNET=10.5.1.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=true\n',
    )
    expect(agent.lease?.subnet.toString()).toBe('10.5.1.0/24')
    expect(backend?.runs).toBe(1)
  })

  it('asks for the previous subnet from subnet.env', async () => {
    await writeSubnetEnv(join(dir, 'subnet.env'), {
      network: Ip4Net.parse('10.5.0.0/16'),
      subnet: Ip4Net.parse('10.5.77.0/24'),
      mtu: 1450,
      ipMasq: false,
    })
    const agent = makeAgent()
    start(agent)
    await waitFor(() => agent.status === 'running')
    expect(agent.lease?.subnet.toString()).toBe('10.5.77.0/24')
  })

  it('retries a missing config every second, then starts', async () => {
    registry.configMisses = 2
    const agent = makeAgent()
    start(agent)
    await waitFor(() => timers.count === 1)
    expect(agent.status).toBe('starting')
    await timers.advance(1000)
    await waitFor(() => timers.count === 1)
    expect(agent.status).toBe('starting')
    await timers.advance(1000)
    await waitFor(() => agent.status === 'running')
    expect(registry.configMisses).toBe(0)
  })

  it.each([
    ['{"Network":"10.1.0.0/29","Backend":{"Type":"rec"}}', 'network is too small'],
    ['{"Network":"10.5.0.0/16","SubnetLen":"x"}', 'Config.SubnetLen of type uint'],
    ['{"Network":"10.5.0.0/16","EnableIPv4":false}', 'none defined stack'],
    [
      `{"Network":"10.5.0.0/16","X":${'['.repeat(20_000)}${']'.repeat(20_000)}}`,
      'exceeded max depth',
    ],
  ])(
    'retries an invalid config every second and starts once it is fixed (%#)',
    async (bad, text) => {
      registry.badConfig = bad
      const warnings: string[] = []
      const logger = {
        ...silentLogger,
        warn: (...args: unknown[]) => void warnings.push(String(args.at(-1))),
        child: () => logger,
      }
      const agent = makeAgent({ logger })
      const { result } = start(agent)
      await waitFor(() => timers.count === 1)
      await timers.advance(1000)
      await waitFor(() => timers.count === 1)
      expect(agent.status).toBe('starting')
      expect(result.error).toBeUndefined()
      expect(registry.leases.size).toBe(0)
      expect(warnings).toHaveLength(2)
      expect(warnings[0]).toMatch(/^Couldn't fetch network config: /)
      expect(warnings[0]).toContain(text)
      registry.badConfig = undefined
      await timers.advance(1000)
      await waitFor(() => agent.status === 'running')
      expect(agent.lease?.subnet.toString()).toBe('10.5.1.0/24')
    },
  )

  it('fails with UnknownBackendError for an unknown Type, leaving no lease', async () => {
    registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'nope' } }, timers)
    const agent = makeAgent()
    const { result } = start(agent)
    await waitFor(() => result.error !== undefined)
    expect(isFlannelError(result.error, 'UNKNOWN_BACKEND')).toBe(true)
    expect((result.error as Error).message).toBe('unknown backend type: nope')
    expect(agent.status).toBe('failed')
    expect(registry.leases.size).toBe(0)
    await expect(stat(join(dir, 'subnet.env'))).rejects.toThrow()
  })

  it('releases the lease and undoes prepare when a later step fails', async () => {
    const undone: string[] = []
    const agent = makeAgent({
      prepare: async () => {
        return async () => {
          undone.push('rules')
        }
      },
      // a directory where the file should be: the write fails
      subnetFile: dir,
    })
    const { result } = start(agent)
    // the write is tried three times (1 s, then 2 s apart) before the start fails
    await waitFor(() => timers.count === 1)
    await timers.advance(1000)
    await waitFor(() => timers.count === 1)
    await timers.advance(2000)
    await waitFor(() => result.error !== undefined)
    await settle()
    expect(isFlannelError(result.error, 'SUBNET_FILE')).toBe(true)
    expect(undone).toEqual(['rules'])
    expect(registry.leases.size).toBe(0)
    expect(registry.watchers.size).toBe(0)
    expect(timers.count).toBe(0)
  })
})

describe('Agent backends list', () => {
  const other = defineBackend('other', () => {
    throw new Error('the other backend is never created')
  })

  it('picks the factory whose type the config names, creating only that one', async () => {
    const agent = makeAgent({
      backends: [other, defineBackend('rec', (ctx) => (backend = new RecordingBackend(ctx)))],
    })
    start(agent)
    await waitFor(() => agent.status === 'running')
    expect(backend?.runs).toBe(1)
  })

  it('awaits a factory that loads its backend asynchronously', async () => {
    const agent = makeAgent({
      backends: [
        defineBackend('rec', async (ctx) => {
          await settle()
          return (backend = new RecordingBackend(ctx))
        }),
      ],
    })
    start(agent)
    await waitFor(() => agent.status === 'running')
    expect(backend?.runs).toBe(1)
  })

  it('refuses two factories claiming one type (compared lower-cased)', () => {
    const rec = (): RecordingBackend => new RecordingBackend(undefined as never)
    const make = () =>
      makeAgent({ backends: [defineBackend('rec', rec), other, { type: 'REC', create: rec }] })
    expect(make).toThrow(InvalidArgumentError)
    expect(make).toThrow(
      'invalid backends "rec": two backends claim the type "rec" (entries 0 and 2); keep one',
    )
  })

  it('refuses an entry that is no factory, naming its index', () => {
    expect(() => makeAgent({ backends: [other, (() => undefined) as never] })).toThrow(
      /^invalid backends\[1\] .*expected a backend factory such as vxlan\(\) or hostGw\(\)/,
    )
  })

  it('refuses a type that is not a lower-case name', () => {
    expect(() => defineBackend('VXLAN ', () => new RecordingBackend(undefined as never))).toThrow(
      'invalid type "VXLAN ": a backend type is lower-case letters, digits and "-" (as "vxlan", "host-gw")',
    )
  })

  it('still takes the deprecated table by type', async () => {
    const agent = makeAgent({ backends: { rec: (ctx) => (backend = new RecordingBackend(ctx)) } })
    start(agent)
    await waitFor(() => agent.status === 'running')
    expect(backend?.runs).toBe(1)
  })
})

describe('Agent ready(), events() and errors', () => {
  it('ready() resolves with lease and MTU, before subscribing and once running', async () => {
    const agent = makeAgent()
    const early = agent.ready()
    start(agent)
    const got = await early
    expect(got.lease.subnet.toString()).toBe('10.5.1.0/24')
    expect(got.mtu).toBe(1450)
    expect(await agent.ready()).toBe(got)
  })

  it('ready() rejects with the start-up error; a run without error callback only logs it', async () => {
    registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'nope' } }, timers)
    const logged: string[] = []
    const logger = {
      ...silentLogger,
      error: (...args: unknown[]) => void logged.push(String(args.at(-1))),
      child: () => logger,
    }
    const agent = makeAgent({ logger })
    const ready = agent.ready()
    sub = agent.run().subscribe(() => undefined) // no error callback: must not crash the process
    await expect(ready).rejects.toThrow('unknown backend type: nope')
    expect(agent.status).toBe('failed')
    expect(isFlannelError(agent.error, 'UNKNOWN_BACKEND')).toBe(true)
    await expect(agent.ready()).rejects.toBe(agent.error)
    expect(logged).toEqual([
      'agent failed (no error callback subscribed): UnknownBackendError: unknown backend type: nope',
    ])
  })

  it('an observer object without error, and no observer at all, do not crash either', async () => {
    registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'nope' } }, timers)
    const agent = makeAgent()
    const seen: string[] = []
    sub = agent.run().subscribe({ next: (e) => seen.push(e.type) })
    await expect(agent.ready()).rejects.toThrow('unknown backend type: nope')
    const second = agent.run().subscribe()
    await waitFor(() => agent.status === 'failed')
    second.unsubscribe()
    expect(seen).toEqual([])
  })

  it('ready() rejects with AbortError when the run stops first, or its signal aborts', async () => {
    registry.config = undefined // the agent waits for a config
    const agent = makeAgent()
    const waiting = new AbortController()
    const aborted = agent.ready({ signal: waiting.signal })
    const stopped = agent.ready()
    start(agent)
    waiting.abort()
    await expect(aborted).rejects.toThrow('waiting for the agent to be ready was aborted')
    sub?.unsubscribe()
    await expect(stopped).rejects.toThrow('the agent stopped before it was ready')
    expect(agent.status).toBe('stopped')
  })

  it('events() yields the events, and leaving the loop stops the agent', async () => {
    const agent = makeAgent()
    const types: string[] = []
    for await (const e of agent.events()) {
      types.push(e.type)
      if (e.type === 'ready') break
    }
    expect(types).toEqual(['registered', 'ready'])
    await settle()
    expect(agent.status).toBe('stopped')
    expect(registry.watchers.size).toBe(0)
    expect(timers.count).toBe(0)
  })

  it('events() throws the failure, and ends when its signal aborts', async () => {
    registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'nope' } }, timers)
    const failing = makeAgent()
    await expect(
      (async () => {
        for await (const _ of failing.events());
      })(),
    ).rejects.toThrow('unknown backend type: nope')

    registry = new FakeRegistry({ Network: '10.5.0.0/16', Backend: { Type: 'rec' } }, timers)
    const agent = makeAgent()
    const stop = new AbortController()
    const types: string[] = []
    for await (const e of agent.events({ signal: stop.signal })) {
      types.push(e.type)
      if (e.type === 'ready') stop.abort()
    }
    // events buffered before the abort are still delivered, then the loop ends
    expect(types.slice(0, 2)).toEqual(['registered', 'ready'])
    expect(agent.status).toBe('stopped')
  })

  it('reports each failed config read as config-failed', async () => {
    registry.config = undefined
    const agent = makeAgent()
    const { events } = start(agent)
    await waitFor(() => timers.count === 1)
    expect(events).toEqual([
      {
        type: 'config-failed',
        error: expect.objectContaining({ code: 'CONFIG_NOT_FOUND' }),
        retryInMs: 1000,
      },
    ])
  })
})

describe('Agent extIface as a function of the config', () => {
  it("is called once with the config, and what it gives is the backend's interface", async () => {
    const calls: NetworkConfig[] = []
    const agent = makeAgent({
      extIface: async (config) => {
        calls.push(config)
        return { ...ext, extAddr: '192.0.2.99' }
      },
    })
    start(agent)
    await agent.ready()
    expect(calls.map((c) => c.network?.toString())).toEqual(['10.5.0.0/16'])
    expect(agent.lease?.attrs.publicIP).toBe('192.0.2.99')
  })

  it('a rejection fails the start with that error, leaving no lease', async () => {
    const agent = makeAgent({
      extIface: () => Promise.reject(new Error('no interface matches eth9')),
    })
    start(agent)
    await expect(agent.ready()).rejects.toThrow('no interface matches eth9')
    expect(registry.leases.size).toBe(0)
    expect(backend).toBeUndefined()
  })
})

/** A backend in two steps: records what the lease owner does with it. */
class TwoStepBackend implements Backend {
  readonly type = 'rec'
  readonly steps: string[] = []
  failActivate = false
  async prepare(): Promise<PreparedNetwork> {
    this.steps.push('prepare')
    return {
      attrs: { publicIP: '192.0.2.77', backendType: 'rec' },
      activate: async (lease: Lease) => {
        this.steps.push(`activate ${lease.subnet.toString()} ${lease.attrs.publicIP}`)
        if (this.failActivate) throw new Error('device vanished')
        return { lease, mtu: 1400, run: () => NEVER }
      },
      abort: async () => void this.steps.push('abort'),
    }
  }
}

describe('Agent as the one lease owner (prepare, acquire, activate)', () => {
  let two: TwoStepBackend
  const makeTwoStep = (extra: Partial<ConstructorParameters<typeof Agent>[0]> = {}): Agent =>
    makeAgent({ backends: [defineBackend('rec', () => (two = new TwoStepBackend()))], ...extra })

  it('acquires the lease with the prepared attributes, then activates with it', async () => {
    const agent = makeTwoStep()
    start(agent)
    expect(await agent.ready()).toMatchObject({ mtu: 1400 })
    expect(two.steps).toEqual(['prepare', 'activate 10.5.1.0/24 192.0.2.77'])
    expect([...registry.leases.values()].map((l) => l.attrs.publicIP)).toEqual(['192.0.2.77'])
  })

  it('a failed activation aborts the preparation and releases the lease', async () => {
    const agent = makeAgent({
      backends: [
        defineBackend('rec', () => {
          two = new TwoStepBackend()
          two.failActivate = true
          return two
        }),
      ],
    })
    start(agent)
    await expect(agent.ready()).rejects.toThrow('device vanished')
    expect(two.steps).toEqual(['prepare', 'activate 10.5.1.0/24 192.0.2.77', 'abort'])
    expect(registry.leases.size).toBe(0)
  })

  it('a later failure (subnet.env) aborts the activated backend too', async () => {
    const agent = makeTwoStep({ subnetFile: dir }) // a directory: the write fails
    start(agent)
    const ready = agent.ready()
    await waitFor(() => timers.count === 1)
    await timers.advance(1000)
    await waitFor(() => timers.count === 1)
    await timers.advance(2000)
    await expect(ready).rejects.toThrow('Failed to write subnet file')
    expect(two.steps.at(-1)).toBe('abort')
    expect(registry.leases.size).toBe(0)
  })

  it('watches the registry once, for the peers and for its own lease', async () => {
    const agent = makeAgent()
    start(agent)
    await agent.ready()
    expect(registry.watchers.size).toBe(1)
    registry.addPeer('10.5.9.0/24', '192.0.2.30')
    await waitFor(() => backend!.received.length === 2)
    registry.remove(agent.lease!.subnet.toString())
    await waitFor(() => agent.status === 'failed')
    expect(isFlannelError(agent.error, 'LEASE_REVOKED')).toBe(true)
    expect(registry.watchers.size).toBe(0)
  })
})

describe('Agent subnet.env that cannot be written', () => {
  it.each([['/proc/1/nope/subnet.env', "ENOENT: no such file or directory, mkdir '/proc/1/nope'"]])(
    '%s: three attempts logged with path and reason, then a SubnetFileError and no lease',
    async (path, reason) => {
      const warnings: string[] = []
      const logger = {
        ...silentLogger,
        warn: (...args: unknown[]) => void warnings.push(String(args.at(-1))),
        child: () => logger,
      }
      let undone = 0
      const agent = makeAgent({
        subnetFile: path,
        logger,
        prepare: async () => async () => void undone++,
      })
      const { events, result } = start(agent)
      await waitFor(() => timers.count === 1)
      expect(events.map((e) => e.type)).toEqual(['registered'])
      expect(registry.leases.size).toBe(1)
      await timers.advance(999)
      expect(timers.count).toBe(1)
      await timers.advance(1)
      await waitFor(() => timers.count === 1)
      await timers.advance(2000)
      await waitFor(() => result.error !== undefined)
      expect(isFlannelError(result.error, 'SUBNET_FILE')).toBe(true)
      expect((result.error as Error).message).toBe(`Failed to write subnet file ${path}: ${reason}`)
      expect((result.error as { path?: string }).path).toBe(path)
      expect(warnings.filter((w) => w.startsWith('Failed to write subnet file'))).toEqual([
        `Failed to write subnet file ${path}: ${reason} (attempt 1 of 3)`,
        `Failed to write subnet file ${path}: ${reason} (attempt 2 of 3)`,
      ])
      await settle()
      expect(undone).toBe(1)
      expect(registry.leases.size).toBe(0)
      expect(agent.status).toBe('failed')
      expect(timers.count).toBe(0)
    },
  )

  it('a write that fails once and then succeeds starts normally', async () => {
    // the directory is a file at first; it is replaced by a directory before the retry
    const parent = join(dir, 'run')
    await writeFile(parent, '')
    const agent = makeAgent({ subnetFile: join(parent, 'subnet.env') })
    start(agent)
    await waitFor(() => timers.count === 1)
    await rm(parent)
    await timers.advance(1000)
    await waitFor(() => agent.status === 'running')
    expect(await readFile(join(parent, 'subnet.env'), 'utf8')).toContain(
      'FLANNEL_SUBNET=10.5.1.1/24',
    )
  })
})

describe('Agent lease stream', () => {
  it('feeds the network the peers only, with removals', async () => {
    const peer = registry.addPeer('10.5.9.0/24', '192.0.2.20')
    const agent = makeAgent()
    const { events } = start(agent)
    await waitFor(() => agent.status === 'running')
    registry.addPeer('10.5.10.0/24', '192.0.2.21')
    registry.remove(peer.subnet.toString())
    await settle()
    const batches = backend!.received.map((b) => b.map((e) => `${e.type} ${e.lease.subnet}`))
    expect(batches).toEqual([
      ['added 10.5.9.0/24'],
      ['added 10.5.10.0/24'],
      ['removed 10.5.9.0/24'],
    ])
    const peers = events.filter((e) => e.type === 'peers')
    expect(peers.map((e) => (e.type === 'peers' ? e.known : -1))).toEqual([1, 2, 1])
    expect(events.filter((e) => e.type === 'network')).toHaveLength(3)
  })
})

describe('Agent peers stream', () => {
  it('passes the first batch on even when only the own lease was in it, later empty ones not', async () => {
    const agent = makeAgent()
    start(agent)
    await waitFor(() => agent.status === 'running')
    await settle()
    // the first batch held only this host's lease: the network still learns "no peers"
    expect(backend!.received).toEqual([[]])
    registry.addPeer('10.5.10.0/24', '192.0.2.21')
    await settle()
    expect(backend!.received.map((b) => b.map((e) => `${e.type} ${e.lease.subnet}`))).toEqual([
      [],
      ['added 10.5.10.0/24'],
    ])
  })
})

describe('Agent and leases overlapping its own', () => {
  it('neither renews nor counts as revoked a lease that only overlaps its own (another key)', async () => {
    const memory = new MemoryRegistry({
      Network: '10.5.0.0/16',
      EnableIPv6: true,
      IPv6Network: 'fd00:5::/48',
      Backend: { Type: 'rec' },
    })
    const agent = makeAgent({ registry: memory })
    const { result } = start(agent)
    await waitFor(() => agent.status === 'running')
    const own = agent.lease!
    // the own IPv4 subnet under a second key (`10.5.x.0-24` beside `10.5.x.0-24&fd00:5:...-64`)
    const alias = await memory.reserve(own.subnet, { publicIP: '192.0.2.66' })
    await settle()
    expect(agent.lease).toEqual(own)
    await memory.releaseLease(alias)
    await settle()
    expect(result.error).toBeUndefined()
    expect(agent.status).toBe('running')
    expect(backend!.received.flat()).toEqual([])
    await memory.releaseLease(own) // the real one still is
    await settle()
    expect(isFlannelError(result.error, 'LEASE_REVOKED')).toBe(true)
    await memory.close()
  })
})

describe('Agent renewal', () => {
  it('renews at expiry minus the margin and reschedules from the new expiry', async () => {
    const agent = makeAgent({ renewMarginMs: HOUR })
    start(agent)
    await waitFor(() => agent.status === 'running')
    await timers.advance(23 * HOUR - 1)
    expect(registry.renewCalls).toBe(0)
    await timers.advance(1)
    expect(registry.renewCalls).toBe(1)
    await timers.advance(23 * HOUR - 1)
    expect(registry.renewCalls).toBe(1)
    await timers.advance(1)
    expect(registry.renewCalls).toBe(2)
  })

  it('retries a failed renewal every minute', async () => {
    const agent = makeAgent({ renewMarginMs: 2 * HOUR })
    const { events } = start(agent)
    await waitFor(() => agent.status === 'running')
    registry.failRenewals = 2
    await timers.advance(22 * HOUR)
    expect(registry.renewCalls).toBe(1)
    await timers.advance(60_000 - 1)
    expect(registry.renewCalls).toBe(1)
    await timers.advance(1)
    expect(registry.renewCalls).toBe(2)
    await timers.advance(60_000)
    expect(registry.renewCalls).toBe(3)
    expect(events.filter((e) => e.type === 'renew-failed')).toHaveLength(2)
    expect(events.filter((e) => e.type === 'renewed')).toHaveLength(1)
    // back on the normal schedule: next renewal 22 h after the successful one
    await timers.advance(22 * HOUR - 1)
    expect(registry.renewCalls).toBe(3)
    await timers.advance(1)
    expect(registry.renewCalls).toBe(4)
  })

  it('an update of the own lease seen in the watch resets the timer', async () => {
    const agent = makeAgent()
    start(agent)
    await waitFor(() => agent.status === 'running')
    await timers.advance(10 * HOUR)
    // someone renews our lease (as flanneld's own-lease watch would see it)
    const own = agent.lease as Lease
    await registry.renewLease(own)
    registry.renewCalls = 0
    await settle()
    await timers.advance(23 * HOUR - 1)
    expect(registry.renewCalls).toBe(0)
    await timers.advance(1)
    expect(registry.renewCalls).toBe(1)
  })
})

describe('Agent stop', () => {
  it('ends with LeaseRevokedError when the own lease is deleted, leaving nothing running', async () => {
    const agent = makeAgent()
    const { result } = start(agent)
    await waitFor(() => agent.status === 'running')
    registry.remove(agent.lease!.subnet.toString())
    await settle()
    expect(isFlannelError(result.error, 'LEASE_REVOKED')).toBe(true)
    expect((result.error as Error).message).toBe('Lease has been revoked')
    expect(agent.status).toBe('failed')
    expect(timers.count).toBe(0)
    expect(registry.watchers.size).toBe(0)
    expect(backend?.active).toBe(0)
  })

  it('keeps running when the own lease goes from a registry that never revokes leases (kube mode), watching only for the network', async () => {
    Object.assign(registry, { revokesLeases: false })
    const agent = makeAgent()
    const { events, result } = start(agent)
    await waitFor(() => agent.status === 'running')
    // One watch: the network's peers; none for the own lease, and no renewal.
    expect(registry.watchers.size).toBe(1)
    expect(timers.count).toBe(0)
    registry.remove(agent.lease!.subnet.toString())
    registry.addPeer('10.5.9.0/24', '192.0.2.9')
    await settle()
    expect(result.error).toBeUndefined()
    expect(agent.status).toBe('running')
    const peers = events.filter((e) => e.type === 'peers')
    expect(peers.at(-1)).toMatchObject({ known: 1 })
    // Nothing is held back after the own lease went: a peer's removal reaches
    // the network, as for flanneld whose own Node was deleted.
    registry.remove('10.5.9.0/24')
    await settle()
    expect(events.filter((e) => e.type === 'peers').at(-1)).toMatchObject({ known: 0 })
  })

  it('unsubscribe stops timers, watches and the network run, and keeps lease and subnet.env', async () => {
    const agent = makeAgent()
    start(agent)
    await waitFor(() => agent.status === 'running')
    expect(timers.count).toBe(1)
    expect(registry.watchers.size).toBe(1) // one watch: peers and the own lease
    sub!.unsubscribe()
    expect(agent.status).toBe('stopped')
    expect(timers.count).toBe(0)
    expect(registry.watchers.size).toBe(0)
    expect(backend?.active).toBe(0)
    expect(registry.leases.size).toBe(1)
    await stat(join(dir, 'subnet.env'))
  })

  it('abort completes the stream and stops everything', async () => {
    const controller = new AbortController()
    const agent = makeAgent()
    const { result } = start(agent, controller.signal)
    await waitFor(() => agent.status === 'running')
    controller.abort()
    expect(result.completed).toBe(true)
    expect(timers.count).toBe(0)
    expect(registry.watchers.size).toBe(0)
  })

  it('abort while waiting for the config leaves no timer and no lease', async () => {
    registry.configMisses = 100
    const controller = new AbortController()
    const { result } = start(makeAgent(), controller.signal)
    await waitFor(() => timers.count === 1)
    controller.abort()
    await settle()
    expect(result.completed).toBe(true)
    expect(timers.count).toBe(0)
    expect(registry.leases.size).toBe(0)
  })

  it('rejects a non-positive renew margin', () => {
    expect(() => makeAgent({ renewMarginMs: 0 })).toThrow(/renewMarginMs/)
  })
})
