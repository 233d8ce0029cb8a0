import { Observable, Subject } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  AbortError,
  InvalidArgumentError,
  Ip4Net,
  MemoryRegistry,
  parseNetworkConfig,
  registerPrepared,
  silentLogger,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkEvent,
} from '@flannel/core'
import { acquireBackendLease, setUpOrReleaseLease } from '@flannel/core/registry'

const CONFIG = { Network: '10.5.0.0/16' }
const ME: LeaseAttrs = { publicIP: '192.0.2.10' }

describe('acquireBackendLease', () => {
  it('returns the acquired lease', async () => {
    const registry = new MemoryRegistry(CONFIG)
    const lease = await acquireBackendLease(registry, ME)
    expect(registry.listLeases().map((l) => l.subnet.toString())).toEqual([lease.subnet.toString()])
  })

  it("prefixes flanneld's wording and keeps the error's class", async () => {
    const registry = new MemoryRegistry(CONFIG)
    const err = await acquireBackendLease(registry, { publicIP: 'nope' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(InvalidArgumentError)
    expect((err as Error).message).toMatch(/^failed to acquire lease: /)
  })

  it('releases the lease and throws AbortError when aborted while acquiring', async () => {
    const registry = new MemoryRegistry(CONFIG)
    const ac = new AbortController()
    const acquire = registry.acquireLease.bind(registry)
    registry.acquireLease = async (attrs, _opts) => {
      const lease = await acquire(attrs, {})
      ac.abort()
      return lease
    }
    await expect(acquireBackendLease(registry, ME, { signal: ac.signal })).rejects.toBeInstanceOf(
      AbortError,
    )
    expect(registry.listLeases()).toEqual([])
  })
})

describe('setUpOrReleaseLease', () => {
  it('keeps the lease when the set-up succeeds', async () => {
    const registry = new MemoryRegistry(CONFIG)
    const lease = await registry.acquireLease(ME)
    await setUpOrReleaseLease(registry, lease, silentLogger, async () => undefined)
    expect(registry.listLeases()).toHaveLength(1)
  })

  it("releases the lease and rethrows the set-up's error", async () => {
    const registry = new MemoryRegistry(CONFIG)
    const lease = await registry.acquireLease(ME)
    const boom = new Error('route refused')
    await expect(
      setUpOrReleaseLease(registry, lease, silentLogger, async () => {
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(registry.listLeases()).toEqual([])
  })

  it("logs a failed release and still rethrows the set-up's error", async () => {
    const registry = new MemoryRegistry(CONFIG)
    const lease = await registry.acquireLease(ME)
    registry.releaseLease = () => Promise.reject(new Error('registry down'))
    const warnings: unknown[] = []
    const logger: Logger = { ...silentLogger, warn: (...args: unknown[]) => warnings.push(args) }
    const boom = new Error('route refused')
    await expect(
      setUpOrReleaseLease(registry, lease, logger, async () => {
        throw boom
      }),
    ).rejects.toBe(boom)
    expect(warnings).toHaveLength(1)
  })
})

describe('registerPrepared', () => {
  /** A backend whose network records the batches `run` receives and echoes each lease as applied. */
  class RecordingNetwork {
    readonly mtu = 1500
    readonly batches: string[][] = []
    constructor(readonly lease: Lease) {}
    run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
      return new Observable<NetworkEvent>((out) =>
        events.subscribe((batch) => {
          this.batches.push(batch.map((e) => `${e.type} ${e.lease.subnet.toString()}`))
          for (const e of batch) out.next({ type: 'applied', action: 'add', lease: e.lease })
        }),
      )
    }
  }
  const backend = {
    type: 'recording',
    prepare: async () => ({
      attrs: ME,
      activate: async (lease: Lease) => new RecordingNetwork(lease),
      abort: async () => undefined,
    }),
  }

  it("feeds run peers only, as the Agent does: the own lease never reaches it, one outside the network is reported ignored, the backend's own members stay", async () => {
    const registry = new MemoryRegistry(CONFIG)
    const network = await registerPrepared(registry, backend, parseNetworkConfig(CONFIG))
    expect(network).toBeInstanceOf(RecordingNetwork)
    const own = network.lease
    const peer: Lease = { ...own, subnet: Ip4Net.parse('10.5.200.0/24') }
    const outside: Lease = { ...own, subnet: Ip4Net.parse('10.6.0.0/24') }
    const events$ = new Subject<LeaseEvent[]>()
    const seen: NetworkEvent[] = []
    const sub = network.run(events$).subscribe((e) => seen.push(e))
    events$.next([
      { type: 'added', lease: own },
      { type: 'added', lease: peer },
      { type: 'added', lease: outside },
    ])
    sub.unsubscribe()
    expect((network as unknown as RecordingNetwork).batches).toEqual([['added 10.5.200.0/24']])
    expect(seen.filter((e) => e.type === 'ignored').map((e) => e.lease.subnet.toString())).toEqual([
      '10.6.0.0/24',
    ])
    expect(events$.observed).toBe(false)
  })
})
