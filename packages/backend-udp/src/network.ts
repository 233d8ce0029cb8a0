import {
  isIp4,
  type Lease,
  type NetworkConfig,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkEvent,
} from '@flannel/core'
import { Observable } from 'rxjs'
import type { UdpCounters, UdpDatapath, UdpLoopMode, UdpPeer } from './datapath.js'

/** What {@link UdpNetwork} is built from (by {@link UdpBackend.registerNetwork}). */
export interface UdpNetworkParts {
  readonly lease: Lease
  readonly mtu: number
  readonly datapath: UdpDatapath
  readonly logger: Logger
  /**
   * The network config.
   *
   * @deprecated Not used: the Agent (or `registerPrepared`) keeps leases
   *   outside the network from `run`.
   */
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
  private running = false
  /** What the peer table holds, subnet -> PublicIP (as this network set it). */
  private readonly applied = new Map<string, string>()

  constructor(parts: UdpNetworkParts) {
    this.lease = parts.lease
    this.mtu = parts.mtu
    this.datapath = parts.datapath
    this.logger = parts.logger
    this.onClose = parts.onClose
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

  /** The peer table the forwarding loop routes by, read back from the native addon. */
  peers(): UdpPeer[] {
    return this.datapath.peers()
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
      // Peers' leases only: the Agent (or registerPrepared) filters with withoutOwnLease.
      const sub = events.subscribe({
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
    const key = lease.subnet.toString()
    const ip = lease.attrs.publicIP
    // udp does not filter on BackendType (flanneld accepts every peer lease).
    if (event.type === 'added') {
      if (!isIp4(ip) || ip === '0.0.0.0') {
        // The subnet's holder now publishes nothing usable: its old entry goes.
        if (this.applied.delete(key)) this.datapath.deletePeer(lease.subnet)
        return {
          type: 'ignored',
          lease,
          reason: `PublicIP ${JSON.stringify(ip)} is not a routable IPv4 address`,
        }
      }
      this.datapath.setPeer(lease.subnet, ip)
      this.applied.set(key, ip)
      this.logger.debug({ subnet: key, publicIP: ip }, 'udp peer added')
      return { type: 'applied', action: 'add', lease }
    }
    const holder = this.applied.get(key)
    if (holder !== undefined && isIp4(ip) && ip !== '0.0.0.0' && holder !== ip) {
      // Late news of a former holder: the subnet's entry belongs to its new one.
      // (A removal naming no holder removes whatever is there.)
      return {
        type: 'ignored',
        lease,
        reason: `removal of ${key} from ${ip}, now held by ${holder}`,
      }
    }
    this.applied.delete(key)
    this.datapath.deletePeer(lease.subnet)
    this.logger.debug({ subnet: key }, 'udp peer removed')
    return { type: 'applied', action: 'remove', lease }
  }
}
