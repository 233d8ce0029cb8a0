/**
 * The backend conformance suite: the behaviour every backend shares, run
 * against the backend's own state store (the in-memory `HostNetwork` for the
 * kernel backends). Each backend supplies a harness that says how to read
 * and plant what it owns for a subnet; the suite drives the two-step
 * registration (`prepare`, then `activate` with a lease it makes, as the
 * Agent does) and the network's `run` on a lease stream it controls, fed
 * as the Agent feeds it: through core's `withoutOwnLease`, the one place
 * that keeps this host's own lease (and leases overlapping it or outside
 * the network) from a backend.
 */
import { Subject, type Subscription } from 'rxjs'
import { afterEach, describe, expect, it as vitestIt } from 'vitest'
import {
  Ip4Net,
  withoutOwnLease,
  type Backend,
  type BackendFactory,
  type ExternalInterface,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Network,
  type NetworkConfig,
  type NetworkEvent,
  type PreparedNetwork,
} from '@flannel/core'

/** What a backend supplies to {@link describeBackendConformance}, per case. */
export interface BackendHarness {
  /** The factory under test. */
  readonly factory: BackendFactory
  /** The network config (its `Backend.Type` is the factory's). */
  readonly config: NetworkConfig
  /** The host's external interface. */
  readonly extIface: ExternalInterface
  /** This host's subnet, e.g. `10.244.1.0/24`. */
  readonly ownSubnet: string
  /** The attributes a peer of this backend publishes (its PublicIP and backend data). */
  peerAttrs(publicIP: string, variant: number): LeaseAttrs
  /** What this host holds for `subnet` that the backend owns, as sorted strings; `[]` for nothing. */
  entriesFor(subnet: string): Promise<string[]>
  /** Leaves an owned entry for `subnet`, as an earlier run would have (after `activate`). */
  plantStale(subnet: string): Promise<void>
  /** Everything the backend created on the host (devices), as strings, to compare after `abort`. */
  created(): Promise<string[]>
  /** Subscriptions, timers and devices still held by the backend (host notifications, ...); 0 when idle. */
  leftovers(): number | Promise<number>
  /** Releases the harness. */
  close(): Promise<void>
}

/** Waits until `cond` holds (polling every 10 ms, up to 5 s). */
async function until(cond: () => boolean | Promise<boolean>, what: string): Promise<void> {
  for (let i = 0; i < 500; i++) {
    if (await cond()) return
    await new Promise((r) => setTimeout(r, 10))
  }
  throw new Error(`not reached within 5 s: ${what}`)
}

const DAY_MS = 24 * 60 * 60_000

/** The titles of the suite's cases, for {@link BackendConformanceOptions.notApplicable}. */
export type BackendConformanceCase =
  | 'publishes attributes, and a factory carrying its type'
  | 'clears stale owned entries on the first batch and adopts the peers in it'
  | 'never acts on its own lease'
  | 'a peer coming back with new attributes replaces its old entries'
  | 'ignores a removal for a subnet now held by another host'
  | 'releases everything it prepared when registration is aborted'
  | 'releases everything when registration is aborted after activate'
  | 'leaves no subscriptions or timers behind after unsubscribe'

/** Options of {@link describeBackendConformance}. */
export interface BackendConformanceOptions {
  /** False for a backend that keeps no per-peer state (alloc, the clouds): the cases about entries then only check that nothing is created. Default true. */
  readonly perPeerState?: boolean
  /** Cases that cannot apply to this backend, each with the reason (printed when it is skipped). */
  readonly notApplicable?: Partial<Record<BackendConformanceCase, string>>
}

/**
 * Defines the shared cases for one backend. `setup` builds a fresh harness
 * for every case. A case listed in `options.notApplicable` is skipped with
 * its reason printed and in its title.
 *
 * @example
 * ```ts
 * describeBackendConformance('host-gw', async () => hostGwHarness())
 * ```
 */
export function describeBackendConformance(
  name: string,
  setup: () => Promise<BackendHarness>,
  options: BackendConformanceOptions = {},
): void {
  const perPeer = options.perPeerState ?? true
  const it = (title: BackendConformanceCase, body: () => Promise<void>): void => {
    const reason = options.notApplicable?.[title]
    if (reason === undefined) {
      vitestIt(title, body)
      return
    }
    vitestIt(`${title} [skipped: ${reason}]`, (ctx) => {
      console.warn(`${name} backend conformance: "${title}" skipped: ${reason}`)
      ctx.skip()
    })
  }
  const open: { harness: BackendHarness; sub?: Subscription }[] = []

  afterEach(async () => {
    for (const o of open.splice(0)) {
      o.sub?.unsubscribe()
      await o.harness.close()
    }
  })

  const lease = (subnet: string, attrs: LeaseAttrs): Lease => ({
    subnet: Ip4Net.parse(subnet),
    attrs,
    expiration: new Date(Date.now() + DAY_MS),
  })

  async function start(): Promise<{
    harness: BackendHarness
    backend: Backend
    prepared: PreparedNetwork
    own: Lease
    network: Network
  }> {
    const harness = await setup()
    open.push({ harness })
    const backend = await harness.factory.create({
      // The lease owner is this suite: a backend that calls the registry fails here.
      registry: new Proxy({} as never, {
        get: (_t, prop) => {
          throw new Error(
            `the backend called the registry (${String(prop)}): the Agent owns the lease`,
          )
        },
      }),
      extIface: harness.extIface,
    })
    expect(typeof backend.prepare).toBe('function')
    const prepared = await backend.prepare!(harness.config)
    const own = lease(harness.ownSubnet, prepared.attrs)
    const network = await prepared.activate(own)
    return { harness, backend, prepared, own, network }
  }

  /** Runs the network on a stream the suite controls, fed as the Agent feeds it (withoutOwnLease). */
  function run(
    network: Network,
    harness: BackendHarness,
  ): { events: Subject<LeaseEvent[]>; seen: NetworkEvent[] } {
    const events = new Subject<LeaseEvent[]>()
    const seen: NetworkEvent[] = []
    const peers = events.pipe(
      withoutOwnLease(network.lease, {
        config: harness.config,
        onIgnored: (lease, reason) => seen.push({ type: 'ignored', lease, reason }),
      }),
    )
    const sub = network.run(peers).subscribe({ next: (e) => seen.push(e) })
    const entry = open.find((o) => o.harness === harness)
    if (entry) entry.sub = sub
    return { events, seen }
  }

  describe(`${name}: backend conformance`, () => {
    it('publishes attributes, and a factory carrying its type', async () => {
      const { harness, prepared, network, own } = await start()
      expect(harness.factory.type).toBe(harness.config.backendType)
      expect(prepared.attrs.publicIP).toBeTruthy()
      expect(network.lease).toBe(own)
      expect(network.mtu).toBeGreaterThan(0)
    })

    it('clears stale owned entries on the first batch and adopts the peers in it', async () => {
      const { harness, network } = await start()
      const stale = '10.244.9.0/24'
      if (perPeer) await harness.plantStale(stale)
      const peer = lease('10.244.2.0/24', harness.peerAttrs('192.0.2.20', 0))
      const { events } = run(network, harness)
      events.next([{ type: 'added', lease: peer }])
      await until(async () => (await harness.entriesFor(stale)).length === 0, 'stale entries gone')
      if (perPeer) {
        await until(
          async () => (await harness.entriesFor('10.244.2.0/24')).length > 0,
          'peer applied',
        )
      } else {
        expect(await harness.entriesFor('10.244.2.0/24')).toEqual([])
      }
    })

    it('never acts on its own lease', async () => {
      const { harness, network, own } = await start()
      const before = await harness.entriesFor(harness.ownSubnet)
      const { events } = run(network, harness)
      const peer = lease('10.244.2.0/24', harness.peerAttrs('192.0.2.20', 0))
      events.next([
        { type: 'added', lease: own },
        { type: 'added', lease: peer },
      ])
      if (perPeer) {
        await until(
          async () => (await harness.entriesFor('10.244.2.0/24')).length > 0,
          'peer applied',
        )
      }
      events.next([{ type: 'removed', lease: own }])
      await new Promise((r) => setTimeout(r, 50))
      expect(await harness.entriesFor(harness.ownSubnet)).toEqual(before)
    })

    it('a peer coming back with new attributes replaces its old entries', async () => {
      const { harness, network } = await start()
      const subnet = '10.244.3.0/24'
      const { events } = run(network, harness)
      events.next([{ type: 'added', lease: lease(subnet, harness.peerAttrs('192.0.2.30', 0)) }])
      let first: string[] = []
      await until(async () => {
        first = await harness.entriesFor(subnet)
        return !perPeer || first.length > 0
      }, 'first entries')
      events.next([{ type: 'added', lease: lease(subnet, harness.peerAttrs('192.0.2.31', 1)) }])
      await until(async () => {
        const now = await harness.entriesFor(subnet)
        return !perPeer || (now.length > 0 && now.every((e) => !first.includes(e)))
      }, 'entries replaced')
      if (perPeer) expect((await harness.entriesFor(subnet)).join(' ')).toContain('192.0.2.31')
    })

    it('ignores a removal for a subnet now held by another host', async () => {
      const { harness, network } = await start()
      const subnet = '10.244.4.0/24'
      const { events } = run(network, harness)
      const old = lease(subnet, harness.peerAttrs('192.0.2.40', 0))
      events.next([{ type: 'added', lease: old }])
      events.next([{ type: 'added', lease: lease(subnet, harness.peerAttrs('192.0.2.41', 1)) }])
      await until(async () => {
        const now = await harness.entriesFor(subnet)
        return !perPeer || now.join(' ').includes('192.0.2.41')
      }, 'the new holder applied')
      const held = await harness.entriesFor(subnet)
      events.next([{ type: 'removed', lease: old }]) // late news of the old holder
      await new Promise((r) => setTimeout(r, 100))
      expect(await harness.entriesFor(subnet)).toEqual(held)
    })

    /** Prepares (and activates, when asked), aborts twice, and checks that nothing is left. */
    async function abortAfter(step: 'prepare' | 'activate'): Promise<void> {
      const harness = await setup()
      open.push({ harness })
      const before = await harness.created()
      const backend = await harness.factory.create({
        registry: {} as never,
        extIface: harness.extIface,
      })
      const prepared = await backend.prepare!(harness.config)
      if (step === 'activate') await prepared.activate(lease(harness.ownSubnet, prepared.attrs))
      await prepared.abort()
      await prepared.abort() // a second abort is harmless
      expect(await harness.created()).toEqual(before)
      expect(await harness.entriesFor(harness.ownSubnet)).toEqual([])
    }

    it('releases everything it prepared when registration is aborted', () => abortAfter('prepare'))

    // The lease owner aborts when a start-up step after activate fails (subnet.env, a hook).
    it('releases everything when registration is aborted after activate', () =>
      abortAfter('activate'))

    it('leaves no subscriptions or timers behind after unsubscribe', async () => {
      const { harness, network } = await start()
      const { events } = run(network, harness)
      events.next([
        { type: 'added', lease: lease('10.244.2.0/24', harness.peerAttrs('192.0.2.20', 0)) },
      ])
      await new Promise((r) => setTimeout(r, 50))
      open.find((o) => o.harness === harness)?.sub?.unsubscribe()
      await new Promise((r) => setTimeout(r, 50))
      expect(await harness.leftovers()).toBe(0)
      expect(events.observed).toBe(false)
    })
  })
}
