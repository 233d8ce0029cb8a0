import { Counter, Gauge, Histogram, Registry } from 'prom-client'
import { isFlannelError, type AgentEvent, type Lease } from '@flannel/core'
import type { UdpCounters } from '@flannel/backend-udp'

/** A network whose datapath counts its drops (the udp backend's `UdpNetwork`). */
export interface DatapathCounterSource {
  counters(): UdpCounters
}

/** The udp datapath's drop counters by the `reason` label they are exported under. */
const UDP_DROP_REASONS = {
  unknown_peer: 'dropUnknownPeer',
  spoofed_source: 'dropSpoofedSource',
  ttl: 'dropTtl',
  malformed: 'dropMalformed',
  truncated: 'dropTruncated',
  no_route: 'dropNoRoute',
} as const satisfies Record<string, keyof UdpCounters>

/** The agent's Prometheus metrics, on a registry of their own (not prom-client's global one). */
export class AgentMetrics {
  /** Where the metrics are registered; serve `registry.metrics()` at `/metrics`. */
  readonly registry = new Registry()
  private readonly leasesKnown = new Gauge({
    name: 'flannel_leases_known',
    help: 'Peer leases currently known (the own lease excluded)',
    registers: [this.registry],
  })
  private readonly eventsApplied = new Counter({
    name: 'flannel_events_applied_total',
    help: 'Peer lease events handled by the backend, by action and result',
    labelNames: ['action', 'result'] as const,
    registers: [this.registry],
  })
  private readonly applyLatency = new Histogram({
    name: 'flannel_apply_latency_seconds',
    help: 'Time from a peer lease event reaching the backend to the backend reporting it handled',
    buckets: [0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5],
    registers: [this.registry],
  })
  private readonly registryErrors = new Counter({
    name: 'flannel_registry_errors_total',
    help: 'Failed registry calls (renewals, watches, start-up)',
    registers: [this.registry],
  })
  private readonly renewals = new Counter({
    name: 'flannel_lease_renewals_total',
    help: 'Own lease renewals, by result',
    labelNames: ['result'] as const,
    registers: [this.registry],
  })
  private readonly pending = new Map<string, number>()
  private datapath: DatapathCounterSource | undefined
  private readonly udpDropped = new Counter({
    name: 'flannel_udp_dropped_packets_total',
    help: 'Packets and datagrams the udp datapath dropped, by reason (udp backend only)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
    collect: () => this.collectUdpDrops(),
  })

  constructor(private readonly now: () => number = () => performance.now()) {
    this.eventsApplied.inc({ action: 'add', result: 'applied' }, 0)
    this.renewals.inc({ result: 'ok' }, 0)
    this.renewals.inc({ result: 'failed' }, 0)
  }

  /**
   * Reads the datapath's counters at every scrape from now on, when `network`
   * has them (the udp backend's network); other networks are ignored.
   */
  watchNetwork(network: object): void {
    if (isDatapathCounterSource(network)) this.datapath = network
  }

  /** Counts a registry failure outside the agent's event stream (e.g. at start-up). */
  registryError(): void {
    this.registryErrors.inc()
  }

  private collectUdpDrops(): void {
    if (!this.datapath) return
    let counters: UdpCounters
    try {
      counters = this.datapath.counters()
    } catch {
      return // the loop is gone; keep the last totals
    }
    // The datapath keeps totals; the counter mirrors them at scrape time.
    this.udpDropped.reset()
    for (const [reason, field] of Object.entries(UDP_DROP_REASONS)) {
      this.udpDropped.inc({ reason }, counters[field])
    }
  }

  /** Updates the metrics from one agent event. */
  observe(event: AgentEvent): void {
    switch (event.type) {
      case 'peers':
        this.leasesKnown.set(event.known)
        for (const e of event.events) this.pending.set(key(e.lease), this.now())
        break
      case 'renewed':
        this.renewals.inc({ result: 'ok' })
        break
      case 'renew-failed':
        this.renewals.inc({ result: 'failed' })
        this.registryErrors.inc()
        break
      case 'config-failed':
        if (isFlannelError(event.error, 'REGISTRY_UNAVAILABLE')) this.registryErrors.inc()
        break
      case 'network': {
        const ev = event.event
        if (ev.type !== 'applied' && ev.type !== 'failed' && ev.type !== 'ignored') break
        const action = ev.type === 'ignored' ? 'any' : ev.action
        this.eventsApplied.inc({ action, result: ev.type })
        const started = this.pending.get(key(ev.lease))
        if (started !== undefined) {
          this.pending.delete(key(ev.lease))
          this.applyLatency.observe((this.now() - started) / 1000)
        }
        break
      }
      default:
        break
    }
  }
}

function isDatapathCounterSource(network: object): network is DatapathCounterSource {
  return typeof (network as Partial<DatapathCounterSource>).counters === 'function'
}

function key(lease: Lease): string {
  return lease.subnet.toString()
}
