import {
  isIp4,
  withoutOwnLease,
  type Lease,
  type NetworkConfig,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkEvent,
} from '@flannel/core'
import { Observable } from 'rxjs'
import type { UdpCounters, UdpDatapath, UdpLoopMode } from './datapath.js'

/** What {@link UdpNetwork} is built from (by {@link UdpBackend.registerNetwork}). */
export interface UdpNetworkParts {
  readonly lease: Lease
  readonly mtu: number
  readonly datapath: UdpDatapath
  readonly logger: Logger
  /** The network config: peers outside its `Network` are ignored. */
  readonly config?: NetworkConfig | undefined
  /** Called once after the datapath closed (e.g. to release a netlink socket). */
  readonly onClose?: (() => Promise<void>) | undefined
}

/**
 * A registered udp network. `run()` starts the forwarding loop and keeps the
 * peer table in step with lease events; unsubscribing stops the loop, joins
 * its threads and closes the TUN (the device and its route disappear). A
 * network runs once.
 */
export class UdpNetwork implements Network {
  /** This host's lease. */
  readonly lease: Lease
  /** TUN MTU = interface MTU - 28 (`FLANNEL_MTU`). */
  readonly mtu: number
  private readonly datapath: UdpDatapath
  private readonly logger: Logger
  private readonly onClose: (() => Promise<void>) | undefined
  private readonly config: NetworkConfig | undefined
  private running = false

  constructor(parts: UdpNetworkParts) {
    this.lease = parts.lease
    this.mtu = parts.mtu
    this.datapath = parts.datapath
    this.logger = parts.logger
    this.onClose = parts.onClose
    this.config = parts.config
  }

  /** The TUN device's name (normally `flannel0`). */
  get device(): string {
    return this.datapath.device
  }

  /** The forwarding mode actually running. */
  get mode(): UdpLoopMode {
    return this.datapath.mode
  }

  /** Datapath counters (packets, bytes, drops by reason), for metrics. */
  counters(): UdpCounters {
    return this.datapath.counters()
  }

  /** Closes the datapath without running (e.g. when the agent gives up before `run`). Idempotent. */
  async close(): Promise<void> {
    this.datapath.close()
    await this.onClose?.()
  }

  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return new Observable<NetworkEvent>((out) => {
      if (this.running) {
        out.error(new Error('a udp network runs once'))
        return
      }
      this.running = true
      try {
        this.datapath.start()
      } catch (error) {
        out.error(error)
        return
      }
      // Only peers' leases reach the peer table, even when a caller passes the registry's stream
      // as is: never our own or one overlapping it, one outside the network, or a second lease
      // for a subnet another lease owns.
      const peers = withoutOwnLease(this.lease, {
        config: this.config,
        onIgnored: (lease, reason) => out.next({ type: 'ignored', lease, reason }),
      })
      const sub = events.pipe(peers).subscribe({
        next: (batch) => {
          for (const event of batch) out.next(this.apply(event))
        },
        error: (error) => out.error(error),
        complete: () => out.complete(),
      })
      return () => {
        sub.unsubscribe()
        const counters = this.datapath.counters()
        this.datapath.close()
        void this.onClose?.()
        this.logger.info({ ...counters }, 'udp network stopped')
      }
    })
  }

  private apply(event: LeaseEvent): NetworkEvent {
    const lease = event.lease
    // udp does not filter on BackendType (flanneld accepts every peer lease).
    if (event.type === 'added') {
      const ip = lease.attrs.publicIP
      if (!isIp4(ip) || ip === '0.0.0.0') {
        return {
          type: 'ignored',
          lease,
          reason: `PublicIP ${JSON.stringify(ip)} is not a routable IPv4 address`,
        }
      }
      this.datapath.setPeer(lease.subnet, ip)
      this.logger.debug({ subnet: lease.subnet.toString(), publicIP: ip }, 'udp peer added')
      return { type: 'applied', action: 'add', lease }
    }
    this.datapath.deletePeer(lease.subnet)
    this.logger.debug({ subnet: lease.subnet.toString() }, 'udp peer removed')
    return { type: 'applied', action: 'remove', lease }
  }
}
