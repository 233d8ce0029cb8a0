// Test doubles for the Agent's unit tests: a fake clock and a small registry
// whose calls can be made to fail. Pure logic only; the Agent also runs
// against the real registries in the backend and agent package tests.
import { Observable } from 'rxjs'
import {
  ConfigNotFoundError,
  Ip4Net,
  LeaseNotFoundError,
  RegistryUnavailableError,
  parseNetworkConfig,
  type AgentTimers,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type NetworkConfig,
  type SubnetRegistry,
  type AcquireOptions,
} from '@flannel/core'

/** A clock that only moves when told to. */
export class FakeTimers implements AgentTimers {
  private time = Date.parse('2026-01-01T00:00:00Z')
  private nextId = 1
  private readonly pending = new Map<number, { at: number; fn: () => void }>()

  now(): number {
    return this.time
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = this.nextId++
    this.pending.set(id, { at: this.time + ms, fn })
    return id
  }
  clearTimeout(handle: unknown): void {
    this.pending.delete(handle as number)
  }
  /** Number of timers not yet fired or cleared. */
  get count(): number {
    return this.pending.size
  }
  /** Moves the clock forward, firing due timers in order, and lets promises settle. */
  async advance(ms: number): Promise<void> {
    const end = this.time + ms
    for (;;) {
      const due = [...this.pending.entries()]
        .filter(([, t]) => t.at <= end)
        .sort((a, b) => a[1].at - b[1].at)[0]
      if (!due) break
      this.pending.delete(due[0])
      this.time = due[1].at
      due[1].fn()
      await settle()
    }
    this.time = end
    await settle()
  }
}

/** Waits (polling, real time, at most 5 s) until `cond` holds; file I/O needs real time. */
export async function waitFor(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 1000 && !cond(); i++) await new Promise((r) => setTimeout(r, 5))
  if (!cond()) throw new Error('condition not reached')
}

/** Lets pending promise callbacks and immediates run. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r))
}

const TTL_MS = 24 * 60 * 60_000

/** A registry with flannel's TTL whose config, renewals and watch can be controlled. */
export class FakeRegistry implements SubnetRegistry {
  config: NetworkConfig | undefined
  leases = new Map<string, Lease>()
  renewCalls = 0
  failRenewals = 0
  /** This many next acquisitions fail as an unreachable registry would. */
  failAcquires = 0
  configMisses = 0
  /** When set, the config text stored instead of a valid one (read as `parseNetworkConfig` reads it). */
  badConfig: string | undefined
  watchers = new Set<(batch: LeaseEvent[]) => void>()
  private next: Ip4Net | undefined

  constructor(
    config: unknown,
    private readonly timers: FakeTimers,
  ) {
    this.config = parseNetworkConfig(config as object)
  }

  async getNetworkConfig(): Promise<NetworkConfig> {
    // an operator's broken config: parsing it throws the ConfigError flanneld would print
    if (this.badConfig !== undefined) return parseNetworkConfig(this.badConfig)
    if (this.configMisses > 0) {
      this.configMisses--
      throw new ConfigNotFoundError('flannel config not found')
    }
    if (!this.config) throw new ConfigNotFoundError('flannel config not found')
    return this.config
  }

  async acquireLease(attrs: LeaseAttrs, opts: AcquireOptions = {}): Promise<Lease> {
    const config = await this.getNetworkConfig()
    if (this.failAcquires > 0) {
      this.failAcquires--
      throw new RegistryUnavailableError('etcd unreachable')
    }
    const wanted = opts.previous?.subnet
    let subnet: Ip4Net
    if (wanted && !this.leases.has(wanted.toString())) subnet = wanted
    else {
      this.next = this.next ? this.next.next() : config.subnetMin!
      subnet = this.next
    }
    return this.put({ subnet, attrs, expiration: new Date(this.timers.now() + TTL_MS) })
  }

  async renewLease(lease: Lease): Promise<Lease> {
    this.renewCalls++
    if (this.failRenewals > 0) {
      this.failRenewals--
      throw new RegistryUnavailableError('etcd unreachable')
    }
    if (!this.leases.has(lease.subnet.toString())) throw new LeaseNotFoundError('lease not found')
    return this.put({ ...lease, expiration: new Date(this.timers.now() + TTL_MS) })
  }

  async releaseLease(lease: Lease): Promise<void> {
    this.remove(lease.subnet.toString())
  }

  /** Deletes a lease as an operator would (`etcdctl del`). */
  remove(key: string): void {
    const lease = this.leases.get(key)
    if (!lease) return
    this.leases.delete(key)
    this.emit([{ type: 'removed', lease }])
  }

  /**
   * Deletes every lease in one change, and with `config` the config too, as
   * `etcdctl del --prefix <prefix>/subnets` (or `<prefix>`) does: the
   * watchers get all removals in one batch.
   */
  wipe(opts: { config: boolean }): void {
    const gone = [...this.leases.values()].map((lease) => ({ type: 'removed' as const, lease }))
    this.leases.clear()
    if (opts.config) this.config = undefined
    this.emit(gone)
  }

  /** Adds a peer's lease. */
  addPeer(cidr: string, publicIP: string): Lease {
    return this.put({
      subnet: Ip4Net.parse(cidr),
      attrs: { publicIP },
      expiration: new Date(this.timers.now() + TTL_MS),
    })
  }

  watchLeases(): Observable<LeaseEvent[]> {
    return new Observable<LeaseEvent[]>((sub) => {
      const fn = (batch: LeaseEvent[]): void => sub.next(batch)
      this.watchers.add(fn)
      const snapshot = [...this.leases.values()].map((lease) => ({ type: 'added' as const, lease }))
      if (snapshot.length > 0) sub.next(snapshot)
      return () => this.watchers.delete(fn)
    })
  }

  async close(): Promise<void> {}

  private put(lease: Lease): Lease {
    this.leases.set(lease.subnet.toString(), lease)
    this.emit([{ type: 'added', lease }])
    return lease
  }

  private emit(batch: LeaseEvent[]): void {
    for (const fn of [...this.watchers]) fn(batch)
  }
}
