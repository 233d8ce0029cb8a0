// The Agent when its own lease disappears: revoked (config still there) as
// flanneld, or a wipe of the whole prefix (config gone too), after which it
// keeps the data plane, waits for the config and takes the same subnet back.
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Observable, type Subscription } from 'rxjs'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  Agent,
  configDifference,
  holdPeerRemovalsWhileOwnLeaseIsGone,
  isFlannelError,
  parseNetworkConfig,
  Ip4Net,
  type AgentEvent,
  type Backend,
  type BackendContext,
  type ExternalInterface,
  type Lease,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkConfig,
  type NetworkEvent,
  type RegisterOptions,
} from '@flannel/core'
import { FakeRegistry, FakeTimers, settle, waitFor } from './agent-fakes.js'

const ext: ExternalInterface = { name: 'eth0', index: 2, mtu: 1500, extAddr: '192.0.2.10' }
const CONFIG = { Network: '10.5.0.0/16', Backend: { Type: 'rec' } }

/** Records every batch its network is given (what would reach the data plane). */
class RecordingBackend implements Backend {
  readonly type = 'rec'
  received: LeaseEvent[][] = []
  active = 0
  constructor(private readonly ctx: BackendContext) {}
  async registerNetwork(_config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    const lease = await this.ctx.registry.acquireLease(
      { publicIP: this.ctx.extIface.extAddr!, backendType: 'rec' },
      { previous: opts.previous },
    )
    return {
      lease,
      mtu: 1450,
      run: (events: Observable<LeaseEvent[]>): Observable<NetworkEvent> =>
        new Observable<NetworkEvent>(() => {
          this.active++
          const inner = events.subscribe((batch) => this.received.push(batch))
          return () => {
            this.active--
            inner.unsubscribe()
          }
        }),
    }
  }
}

/** A logger keeping `level message` lines. */
function recordingLogger(lines: string[]): Logger {
  const at =
    (level: string) =>
    (a: object | string, b?: string): void => {
      lines.push(`${level} ${typeof a === 'string' ? a : (b ?? '')}`)
    }
  const logger: Logger = {
    trace: at('trace'),
    debug: at('debug'),
    info: at('info'),
    warn: at('warn'),
    error: at('error'),
    child: () => logger,
  }
  return logger
}

let dir: string
let timers: FakeTimers
let registry: FakeRegistry
let backend: RecordingBackend | undefined
let sub: Subscription | undefined
let logs: string[]

beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'flannel-wipe-'))
  timers = new FakeTimers()
  registry = new FakeRegistry(CONFIG, timers)
  backend = undefined
  logs = []
})
afterEach(async () => {
  sub?.unsubscribe()
  sub = undefined
  await rm(dir, { recursive: true, force: true })
})

async function running(): Promise<{
  agent: Agent
  events: AgentEvent[]
  result: { error?: unknown }
  own: Lease
}> {
  const agent = new Agent({
    registry,
    extIface: ext,
    subnetFile: join(dir, 'subnet.env'),
    timers,
    logger: recordingLogger(logs),
    backends: { rec: (ctx) => (backend = new RecordingBackend(ctx)) },
  })
  const events: AgentEvent[] = []
  const result: { error?: unknown } = {}
  sub = agent.run().subscribe({
    next: (e) => events.push(e),
    error: (e: unknown) => (result.error = e),
  })
  await waitFor(() => agent.status === 'running')
  return { agent, events, result, own: agent.lease! }
}

const removals = (): string[] =>
  backend!.received.flat().flatMap((e) => (e.type === 'removed' ? [e.lease.subnet.toString()] : []))

describe('Agent: own lease deleted, config still there (flanneld: revoked)', () => {
  it('ends with LeaseRevokedError and hands the network none of the removals that came with it', async () => {
    registry.addPeer('10.5.20.0/24', '192.0.2.20')
    registry.addPeer('10.5.30.0/24', '192.0.2.30')
    const { agent, result } = await running()
    await settle()
    // `etcdctl del --prefix <prefix>/subnets`: every lease in one batch
    registry.wipe({ config: false })
    await settle()
    expect(isFlannelError(result.error, 'LEASE_REVOKED')).toBe(true)
    expect(agent.status).toBe('failed')
    expect(logs).toContain('warn Lease has been revoked. Shutting down daemon.')
    // the peers' routes stay: the agent stopped without deleting them
    expect(removals()).toEqual([])
    expect(backend!.active).toBe(0)
    expect(timers.count).toBe(0)
    expect(registry.watchers.size).toBe(0)
  })
})

describe('Agent: the whole prefix wiped (config gone too)', () => {
  it('keeps running and the data plane untouched, waits for the config, takes the same subnet back', async () => {
    const peerA = registry.addPeer('10.5.20.0/24', '192.0.2.20')
    registry.addPeer('10.5.30.0/24', '192.0.2.30')
    const { agent, events, result, own } = await running()
    await settle()
    registry.wipe({ config: true })
    await settle()
    expect(result.error).toBeUndefined()
    expect(agent.status).toBe('running')
    expect(events.filter((e) => e.type === 'registry-wiped')).toHaveLength(1)
    await timers.advance(3_000)
    // flanneld's start-up line, once a second
    expect(logs.filter((l) => l.startsWith("warn Couldn't fetch network config: "))).toHaveLength(4)
    expect(removals()).toEqual([])

    // a peer that comes back first passes as usual
    registry.addPeer(peerA.subnet.toString(), '192.0.2.20')
    await settle()
    registry.config = parseNetworkConfig(CONFIG)
    await timers.advance(1_000)
    expect(result.error).toBeUndefined()
    const back = events.filter((e) => e.type === 'reacquired')
    expect(back).toHaveLength(1)
    expect(agent.lease!.subnet.toString()).toBe(own.subnet.toString())
    expect(registry.leases.get(own.subnet.toString())?.attrs).toEqual(own.attrs)
    expect(removals()).toEqual([])
    const added = backend!.received.flat().filter((e) => e.type === 'added')
    expect(added.map((e) => e.lease.subnet.toString())).toEqual([
      '10.5.20.0/24',
      '10.5.30.0/24',
      '10.5.20.0/24',
    ])
    // renewal resumes on the new lease: 23 h later
    expect(timers.count).toBe(1)
    registry.renewCalls = 0
    await timers.advance(23 * 60 * 60_000)
    expect(registry.renewCalls).toBe(1)
    expect(result.error).toBeUndefined()

    // once the own lease is back, a peer leaving is applied again
    registry.remove('10.5.20.0/24')
    await settle()
    expect(removals()).toEqual(['10.5.20.0/24'])
  })

  it('a renewal answered "not found" while the config is gone is a wipe too', async () => {
    const { agent, events, result, own } = await running()
    registry.leases.clear()
    registry.config = undefined
    await timers.advance(23 * 60 * 60_000)
    expect(registry.renewCalls).toBe(1)
    expect(result.error).toBeUndefined()
    expect(events.filter((e) => e.type === 'registry-wiped')).toHaveLength(1)
    registry.config = parseNetworkConfig(CONFIG)
    await timers.advance(1_000)
    expect(events.filter((e) => e.type === 'reacquired')).toHaveLength(1)
    expect(agent.lease!.subnet.toString()).toBe(own.subnet.toString())
  })

  it('an unreachable registry while taking the subnet back is retried with backoff, never fatal', async () => {
    const { agent, events, result, own } = await running()
    registry.wipe({ config: true })
    await settle()
    registry.failAcquires = 2
    registry.config = parseNetworkConfig(CONFIG)
    await timers.advance(1_000)
    expect(registry.failAcquires).toBe(1)
    await timers.advance(1_000) // first retry after 1 s
    expect(registry.failAcquires).toBe(0)
    await timers.advance(1_999) // then 2 s
    expect(events.filter((e) => e.type === 'reacquired')).toHaveLength(0)
    await timers.advance(1)
    expect(result.error).toBeUndefined()
    expect(events.filter((e) => e.type === 'reacquired')).toHaveLength(1)
    expect(agent.lease!.subnet.toString()).toBe(own.subnet.toString())
    expect(
      logs.filter((l) => l.startsWith(`warn Taking subnet ${own.subnet.toString()} back failed`)),
    ).toHaveLength(2)
  })

  it('a restored config with another Network ends the agent with LeaseRecoveryError, acquiring nothing', async () => {
    const { agent, result, own } = await running()
    registry.wipe({ config: true })
    await settle()
    registry.config = parseNetworkConfig({ ...CONFIG, Network: '10.6.0.0/16' })
    await timers.advance(1_000)
    expect(isFlannelError(result.error, 'LEASE_NOT_RECOVERED')).toBe(true)
    expect((result.error as Error).message).toBe(
      `cannot take subnet ${own.subnet.toString()} back after the registry was wiped: the restored network config differs in Network: 10.6.0.0/16 (was 10.5.0.0/16); restart the agent to register under it`,
    )
    expect(agent.status).toBe('failed')
    expect(registry.leases.size).toBe(0)
    expect(removals()).toEqual([])
    expect(backend!.active).toBe(0)
    expect(timers.count).toBe(0)
  })

  it('a subnet another host took meanwhile is not used: the lease offered is released, LeaseRecoveryError', async () => {
    const { result, own } = await running()
    registry.wipe({ config: true })
    await settle()
    registry.addPeer(own.subnet.toString(), '192.0.2.99')
    registry.config = parseNetworkConfig(CONFIG)
    await timers.advance(1_000)
    expect(isFlannelError(result.error, 'LEASE_NOT_RECOVERED')).toBe(true)
    expect((result.error as Error).message).toMatch(
      new RegExp(
        `^cannot take subnet ${own.subnet.toString().replace(/\./g, '\\.')} back after the registry was wiped: another host holds it now \\(the registry offered 10\\.5\\.\\d+\\.0-24\\)$`,
      ),
    )
    expect([...registry.leases.keys()]).toEqual([own.subnet.toString()])
    expect(registry.leases.get(own.subnet.toString())!.attrs.publicIP).toBe('192.0.2.99')
  })

  it('stops cleanly while waiting for the config: no timers or watches left', async () => {
    const { agent } = await running()
    registry.wipe({ config: true })
    await timers.advance(2_000)
    sub!.unsubscribe()
    await settle()
    expect(agent.status).toBe('stopped')
    expect(timers.count).toBe(0)
    expect(registry.watchers.size).toBe(0)
  })
})

describe('holdPeerRemovalsWhileOwnLeaseIsGone', () => {
  const lease = (cidr: string): Lease => ({
    subnet: Ip4Net.parse(cidr),
    attrs: { publicIP: '192.0.2.1' },
    expiration: new Date(0),
  })
  const own = lease('10.5.1.0/24')
  const a = lease('10.5.2.0/24')
  const b = lease('10.5.3.0/24')
  const run = (batches: LeaseEvent[][]): string[][] => {
    const out: string[][] = []
    new Observable<LeaseEvent[]>((s) => batches.forEach((x) => s.next(x)))
      .pipe(holdPeerRemovalsWhileOwnLeaseIsGone(own))
      .subscribe((batch) => out.push(batch.map((e) => `${e.type} ${e.lease.subnet.toString()}`)))
    return out
  }

  it('holds the peers removed with the own lease (before or after it in the batch) until it is back', () => {
    expect(
      run([
        [
          { type: 'added', lease: own },
          { type: 'added', lease: a },
          { type: 'added', lease: b },
        ],
        [
          { type: 'removed', lease: a },
          { type: 'removed', lease: own },
          { type: 'removed', lease: b },
        ],
        [{ type: 'added', lease: a }],
        [{ type: 'removed', lease: a }],
        [{ type: 'added', lease: own }],
        [{ type: 'removed', lease: a }],
      ]),
    ).toEqual([
      ['added 10.5.1.0/24', 'added 10.5.2.0/24', 'added 10.5.3.0/24'],
      ['removed 10.5.1.0/24'],
      ['added 10.5.2.0/24'],
      ['added 10.5.1.0/24'],
      ['removed 10.5.2.0/24'],
    ])
  })
})

describe('configDifference', () => {
  const used = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'vxlan', VNI: 1 } })
  it('is undefined for the same config written otherwise (defaults, key order, Type case)', () => {
    const same = parseNetworkConfig({
      Backend: { VNI: 1, Type: 'VXLAN' },
      SubnetLen: 24,
      Network: '10.5.0.0/16',
    })
    expect(configDifference(used, same)).toBeUndefined()
  })
  it.each([
    [
      { Network: '10.5.0.0/16', SubnetLen: 25, Backend: { Type: 'vxlan', VNI: 1 } },
      'SubnetLen: 25 (was 24)',
    ],
    [
      { Network: '10.5.0.0/16', Backend: { Type: 'vxlan', VNI: 2 } },
      'Backend: {"Type":"vxlan","VNI":2} (was {"Type":"vxlan","VNI":1})',
    ],
    [
      { Network: '10.5.0.0/16', Backend: { Type: 'host-gw' } },
      'Backend: {"Type":"host-gw"} (was {"Type":"vxlan","VNI":1})',
    ],
  ])('names the first field that differs: %j', (next, text) => {
    expect(configDifference(used, parseNetworkConfig(next))).toBe(text)
  })
})
