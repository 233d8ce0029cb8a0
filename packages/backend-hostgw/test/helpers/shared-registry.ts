/**
 * A tiny in-process registry shared by several hosts of one test: hands out
 * consecutive /24s and streams lease changes (snapshot first, then deltas),
 * leaving out each host's own lease as core's agent does.
 */
import {
  Ip4Net,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type NetworkConfig,
  type SubnetRegistry,
} from '@flannel/core'
import { Observable, Subject } from 'rxjs'

export class SharedLeases {
  readonly leases = new Map<string, Lease>()
  private readonly changes = new Subject<LeaseEvent[]>()
  private next = 1

  constructor(readonly config: NetworkConfig) {}

  /** A registry view for one host. */
  forHost(): SubnetRegistry & {
    own: () => Lease | undefined
    peerEvents: () => Observable<LeaseEvent[]>
  } {
    let own: Lease | undefined
    const shared = this.leases
    const changes = this.changes
    const alloc = (attrs: LeaseAttrs): Lease => {
      const lease: Lease = {
        subnet: new Ip4Net(Ip4Net.parse(`10.244.${this.next++}.0/24`).ip, 24),
        attrs,
        expiration: new Date(Date.now() + 86_400_000),
      }
      shared.set(lease.subnet.toString(), lease)
      changes.next([{ type: 'added', lease }])
      return lease
    }
    const registry = {
      getNetworkConfig: async () => this.config,
      acquireLease: async (attrs: LeaseAttrs) => (own = alloc(attrs)),
      renewLease: async (lease: Lease) => lease,
      releaseLease: async (lease: Lease) => this.remove(lease.subnet.toString()),
      watchLeases: () => this.watch(),
      close: async () => {},
      own: () => own,
      peerEvents: () =>
        new Observable<LeaseEvent[]>((s) =>
          this.watch().subscribe({
            next: (batch) => {
              const peers = batch.filter((e) => !own || !e.lease.subnet.equals(own.subnet))
              if (peers.length > 0 || batch.length === 0) s.next(peers)
            },
            error: (e: unknown) => s.error(e),
          }),
        ),
    }
    return registry
  }

  remove(subnet: string): void {
    const lease = this.leases.get(subnet)
    if (!lease) return
    this.leases.delete(subnet)
    this.changes.next([{ type: 'removed', lease }])
  }

  private watch(): Observable<LeaseEvent[]> {
    return new Observable<LeaseEvent[]>((s) => {
      s.next([...this.leases.values()].map((lease) => ({ type: 'added' as const, lease })))
      return this.changes.subscribe(s)
    })
  }
}
