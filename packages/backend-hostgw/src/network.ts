import type {
  ExternalInterface,
  Lease,
  LeaseEvent,
  Logger,
  Network,
  NetworkConfig,
  NetworkEvent,
} from '@flannel/core'
import { leaseKey } from '@flannel/core/registry'
import {
  isNetlinkError,
  type AddressFamily,
  type HostNetwork,
  type HostNetworkNotification,
  type LinkAddress,
  type Route,
} from '@flannel/linux'
import { normalizeCidr, normalizeIp, ReconcileLoop } from '@flannel/linux/backend'
import { Observable, type Subscriber } from 'rxjs'
import { onLinkOf } from './onlink.js'

/** What {@link HostGwNetwork} needs; built by the backend. */
export interface HostGwNetworkInit {
  readonly lease: Lease
  readonly mtu: number
  readonly ext: ExternalInterface
  readonly config: NetworkConfig
  readonly host: HostNetwork
  readonly logger: Logger
  readonly routeProtocol: number
  readonly checkIntervalMs: number
  readonly repairDelayMs: number
}

/** A route this host wants, and the lease that wants it. */
interface Wanted {
  readonly route: Route
  readonly lease: Lease
}

/** The host-gw network: keeps one route per peer subnet (and family) in the kernel. */
export class HostGwNetwork implements Network {
  readonly lease: Lease
  readonly mtu: number
  private readonly init: HostGwNetworkInit

  constructor(init: HostGwNetworkInit) {
    this.init = init
    this.lease = init.lease
    this.mtu = init.mtu
  }

  /**
   * Keeps the peers' entries in step with `events`, which carry peers' leases
   * only (the Agent, or `registerPrepared`, filters this host's own lease and
   * the leases overlapping it or outside the network, with `withoutOwnLease`).
   */
  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return new Observable<NetworkEvent>((subscriber) =>
      new RouteKeeper(this.init, subscriber).start(events),
    )
  }
}

function routeKey(family: AddressFamily, dst: string): string {
  return `${family} ${dst}`
}

/** The state of one `run` subscription. */
class RouteKeeper extends ReconcileLoop {
  private readonly wanted = new Map<string, Wanted>()
  private readonly reportedOffLink = new Set<string>()
  private initialBatchDone = false
  /** The external interface's addresses, read once per batch or check (for the on-link test). */
  private addresses: LinkAddress[] | undefined

  constructor(
    private readonly init: HostGwNetworkInit,
    out: Subscriber<NetworkEvent>,
  ) {
    super(out, {
      host: init.host,
      notificationKinds: ['route', 'link'],
      notificationsLostMessage: 'route notifications stopped; relying on the periodic check',
      checkIntervalMs: init.checkIntervalMs,
    })
  }

  protected async applyBatch(batch: readonly LeaseEvent[]): Promise<void> {
    this.addresses = undefined
    for (const event of batch) {
      if (this.stopped) return
      if (event.lease.attrs.backendType !== 'host-gw') {
        this.init.logger.info(
          { subnet: event.lease.subnet.toString() },
          'Ignoring non-host-gw subnet',
        )
        this.emit({
          type: 'ignored',
          lease: event.lease,
          reason: `Ignoring non-host-gw subnet: type=${event.lease.attrs.backendType ?? ''}`,
        })
        if (event.type === 'added') await this.dropReplaced(event.lease, new Set())
        continue
      }
      if (event.type === 'added') await this.addLease(event.lease)
      else await this.removeLease(event.lease)
    }
    if (!this.initialBatchDone) {
      // The first batch holds every current lease: now owned routes nobody wants can go.
      this.initialBatchDone = true
      await this.check(false)
    }
  }

  private routesOf(lease: Lease): Route[] {
    const { config, ext, routeProtocol } = this.init
    const routes: Route[] = []
    if (config.enableIPv4 && lease.attrs.publicIP && lease.attrs.publicIP !== '0.0.0.0') {
      routes.push({
        family: 'inet',
        dst: lease.subnet.toString(),
        gateway: normalizeIp(lease.attrs.publicIP),
        linkIndex: ext.index,
        protocol: routeProtocol,
      })
    }
    if (config.enableIPv6 && lease.ipv6Subnet && lease.attrs.publicIPv6) {
      routes.push({
        family: 'inet6',
        dst: normalizeCidr(lease.ipv6Subnet.toString()),
        gateway: normalizeIp(lease.attrs.publicIPv6),
        linkIndex: ext.index,
        protocol: routeProtocol,
      })
    }
    return routes
  }

  private async addLease(lease: Lease): Promise<void> {
    const routes = this.routesOf(lease)
    let failed: unknown
    let ignored = false
    for (const route of routes) {
      const key = routeKey(route.family, route.dst)
      this.wanted.set(key, { route, lease })
      const result = await this.install(route, lease)
      if (result === 'off-link') ignored = true
      else if (result !== 'ok') failed = result.error
    }
    await this.dropReplaced(lease, new Set(routes.map((r) => routeKey(r.family, r.dst))))
    if (failed !== undefined) this.emit({ type: 'failed', action: 'add', lease, error: failed })
    else if (!ignored && routes.length > 0) this.emit({ type: 'applied', action: 'add', lease })
  }

  /** Writes one route unless its gateway is off-link; reports the outcome. */
  private async install(
    route: Route,
    lease: Lease,
  ): Promise<'ok' | 'off-link' | { error: unknown }> {
    const key = routeKey(route.family, route.dst)
    const { host, ext } = this.init
    try {
      this.addresses ??= await host.listAddresses({ linkIndex: ext.index })
      if (!onLinkOf(this.addresses, route.gateway!)) {
        if (!this.reportedOffLink.has(key)) {
          this.reportedOffLink.add(key)
          const reason = `peer PublicIP ${route.gateway} is not on-link on ${ext.name}; no route to ${route.dst}`
          this.init.logger.warn({ subnet: route.dst, publicIP: route.gateway }, reason)
          this.emit({ type: 'ignored', lease, reason })
        }
        return 'off-link'
      }
      this.reportedOffLink.delete(key)
      await host.replaceRoute(route)
      return 'ok'
    } catch (error) {
      this.init.logger.error({ err: error, subnet: route.dst }, 'failed to add route')
      return { error }
    }
  }

  /**
   * Deletes the routes an earlier value of the same lease key put in and the
   * new value (routes `keep`) no longer wants. A PUT can turn a peer's value
   * into one this network does not use (another backend type, no PublicIP,
   * one family fewer): the new value replaces the old, and the key's later
   * removal carries the new value, which names no route, so the old route
   * would stay with nobody owning it. (flanneld keeps it until it restarts.)
   */
  private async dropReplaced(lease: Lease, keep: ReadonlySet<string>): Promise<void> {
    const id = leaseKey(lease)
    const dsts: [AddressFamily, string][] = [['inet', lease.subnet.toString()]]
    if (lease.ipv6Subnet) dsts.push(['inet6', normalizeCidr(lease.ipv6Subnet.toString())])
    for (const [family, dst] of dsts) {
      const key = routeKey(family, dst)
      const current = this.wanted.get(key)
      if (keep.has(key) || current === undefined || leaseKey(current.lease) !== id) continue
      this.wanted.delete(key)
      this.reportedOffLink.delete(key)
      const { route } = current
      try {
        await this.init.host.deleteRoute({
          family,
          dst,
          gateway: route.gateway,
          linkIndex: route.linkIndex,
        })
        this.emit({ type: 'applied', action: 'remove', lease: current.lease })
      } catch (error) {
        if (isNetlinkError(error, 'ESRCH')) continue
        this.emit({ type: 'failed', action: 'remove', lease: current.lease, error })
      }
    }
  }

  private async removeLease(lease: Lease): Promise<void> {
    let failed: unknown
    let removed = 0
    let superseded: string | undefined
    for (const route of this.routesOf(lease)) {
      const key = routeKey(route.family, route.dst)
      const current = this.wanted.get(key)
      // A late removal of a subnet that now belongs to another address leaves the newer route alone.
      if (current && current.route.gateway !== route.gateway) {
        superseded = current.route.gateway
        continue
      }
      removed++
      this.wanted.delete(key)
      this.reportedOffLink.delete(key)
      try {
        await this.init.host.deleteRoute({
          family: route.family,
          dst: route.dst,
          gateway: route.gateway,
          linkIndex: route.linkIndex,
        })
      } catch (error) {
        if (!isNetlinkError(error, 'ESRCH')) failed = error
      }
    }
    if (failed !== undefined) this.emit({ type: 'failed', action: 'remove', lease, error: failed })
    else if (removed > 0) this.emit({ type: 'applied', action: 'remove', lease })
    else if (superseded !== undefined) {
      this.emit({
        type: 'ignored',
        lease,
        reason: `removal of ${lease.subnet.toString()} via ${lease.attrs.publicIP} ignored: now routed via ${superseded}`,
      })
    }
  }

  protected onNotification(n: HostNetworkNotification): void {
    if (n.kind === 'overflow') return this.scheduleCheck(this.init.repairDelayMs)
    if (n.kind === 'link') {
      if (n.link.index === this.init.ext.index) this.scheduleCheck(this.init.repairDelayMs)
      return
    }
    if (n.kind !== 'route') return
    const w = this.wanted.get(routeKey(n.route.family, n.route.dst))
    if (!w) return
    const same =
      n.action === 'new' &&
      n.route.gateway === w.route.gateway &&
      n.route.linkIndex === w.route.linkIndex
    if (!same) this.scheduleCheck(this.init.repairDelayMs)
  }

  /**
   * Compares the kernel with the wanted routes: re-adds missing or changed
   * ones, and (after the first lease batch) deletes routes with our protocol
   * that no lease wants.
   */
  protected async check(report: boolean): Promise<void> {
    if (this.stopped || !this.initialBatchDone) return
    this.addresses = undefined
    const { host, routeProtocol } = this.init
    const families: AddressFamily[] = []
    if (this.init.config.enableIPv4) families.push('inet')
    if (this.init.config.enableIPv6) families.push('inet6')
    for (const family of families) {
      let routes: Route[]
      try {
        routes = await host.listRoutes({ family })
      } catch (error) {
        this.emit({ type: 'warning', message: `could not list ${family} routes`, error })
        continue
      }
      const byDst = new Map<string, Route[]>()
      for (const r of routes) byDst.set(r.dst, [...(byDst.get(r.dst) ?? []), r])
      for (const [key, w] of this.wanted) {
        if (w.route.family !== family || this.stopped) continue
        const present = (byDst.get(w.route.dst) ?? []).some(
          (r) =>
            r.gateway === w.route.gateway &&
            r.linkIndex === w.route.linkIndex &&
            r.protocol === w.route.protocol,
        )
        if (present) continue
        const result = await this.install(w.route, w.lease)
        if (result === 'ok') {
          if (report) this.init.logger.info({ subnet: w.route.dst }, 'Route recovered')
          this.emit({
            type: 'repaired',
            what: 'route',
            detail: `${w.route.dst} via ${w.route.gateway}`,
          })
        } else if (result !== 'off-link') {
          this.emit({
            type: 'warning',
            message: `could not restore route ${key}`,
            error: result.error,
          })
        }
      }
      // Protocols up to `static` (4) are shared with the kernel and administrators: never clean those.
      const ownsProtocol = routeProtocol > 4
      for (const r of routes) {
        if (!ownsProtocol || r.protocol !== routeProtocol || this.stopped) continue
        if (this.wanted.has(routeKey(family, r.dst))) continue
        try {
          await host.deleteRoute({
            family,
            dst: r.dst,
            protocol: routeProtocol,
            gateway: r.gateway,
            linkIndex: r.linkIndex,
          })
          this.emit({
            type: 'repaired',
            what: 'stale route removed',
            detail: `${r.dst} via ${r.gateway ?? '-'}`,
          })
        } catch (error) {
          if (!isNetlinkError(error, 'ESRCH')) {
            this.emit({ type: 'warning', message: `could not remove stale route ${r.dst}`, error })
          }
        }
      }
    }
  }
}
