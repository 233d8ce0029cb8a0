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
  type Link,
  type LinkAddress,
  type Route,
  type VxlanLinkSpec,
} from '@flannel/linux'
import { normalizeCidr, ReconcileLoop, withRetry } from '@flannel/linux/backend'
import { Observable, type Subscriber } from 'rxjs'
import { peerPlane, type PeerPlane } from './data.js'
import { configureDevice, ensureDevice, incompatibility, setDeviceMtu } from './device.js'

/** `rtm_protocol` of connected routes the kernel adds for addresses. */
const RTPROT_KERNEL = 2

/** One family's local device, as prepared by the backend. */
export interface LocalPlane {
  readonly family: AddressFamily
  /** Creation spec, MAC included (the published one, reused when the device is recreated). */
  readonly spec: VxlanLinkSpec & { readonly mac: string }
  /** This host's VTEP address (its lease subnet address). */
  readonly address: string
  /** Current device; replaced when the device is recreated. */
  link: Link
}

/** What {@link VxlanNetwork} needs; built by the backend. */
export interface VxlanNetworkInit {
  readonly lease: Lease
  readonly mtu: number
  readonly ext: ExternalInterface
  readonly config: NetworkConfig
  readonly host: HostNetwork
  readonly logger: Logger
  readonly planes: readonly LocalPlane[]
  readonly directRouting: boolean
  readonly routeProtocol: number
  readonly checkIntervalMs: number
  readonly repairDelayMs: number
  readonly attempts: number
  readonly retryBaseMs: number
  /** Applied to a (re)created device, e.g. switching tx checksum offload off. */
  readonly tuneDevice: (name: string) => Promise<void>
  /** Warnings from registration, emitted when `run` starts. */
  readonly startWarnings: readonly string[]
}

/** The vxlan network: one neighbour, FDB entry and route per peer (or a direct route). */
export class VxlanNetwork implements Network {
  readonly lease: Lease
  readonly mtu: number
  private readonly init: VxlanNetworkInit

  constructor(init: VxlanNetworkInit) {
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
      new PeerKeeper(this.init, subscriber).start(events),
    )
  }
}

/** A peer's wanted state for one family. */
interface Wanted {
  readonly lease: Lease
  readonly peer: PeerPlane
  readonly direct: boolean
}

function keyOf(family: AddressFamily, dst: string): string {
  return `${family} ${dst}`
}

/** The state of one `run` subscription. */
class PeerKeeper extends ReconcileLoop {
  private readonly wanted = new Map<string, Wanted>()
  private initialBatchDone = false
  private extAddresses: LinkAddress[] | undefined

  constructor(
    private readonly init: VxlanNetworkInit,
    out: Subscriber<NetworkEvent>,
  ) {
    super(out, {
      host: init.host,
      notificationKinds: ['link', 'route', 'neighbour', 'fdb'],
      notificationsLostMessage: 'kernel notifications stopped; relying on the periodic check',
      checkIntervalMs: init.checkIntervalMs,
    })
  }

  override start(events: Observable<LeaseEvent[]>): () => void {
    for (const message of this.init.startWarnings) this.emit({ type: 'warning', message })
    return super.start(events)
  }

  private plane(family: AddressFamily): LocalPlane | undefined {
    return this.init.planes.find((p) => p.family === family)
  }

  protected async applyBatch(batch: readonly LeaseEvent[]): Promise<void> {
    this.extAddresses = undefined
    for (const event of batch) {
      if (this.stopped) return
      const lease = event.lease
      if (lease.attrs.backendType !== 'vxlan') {
        const reason = `ignoring non-vxlan v4Subnet=${lease.subnet.toString()}: type=${lease.attrs.backendType ?? ''}`
        this.init.logger.info({ subnet: lease.subnet.toString() }, reason)
        this.emit({ type: 'ignored', lease, reason })
        if (event.type === 'added') await this.dropReplaced(lease, new Set())
        continue
      }
      if (event.type === 'added') await this.addLease(lease)
      else await this.removeLease(lease)
    }
    if (!this.initialBatchDone) {
      // The first batch holds every current lease: adopt what matches, drop what nobody wants.
      this.initialBatchDone = true
      await this.check(false)
    }
  }

  private async addLease(lease: Lease): Promise<void> {
    let failed: unknown
    let applied = 0
    const keep = new Set<string>()
    for (const local of this.init.planes) {
      const read = peerPlane(lease, local.family)
      if (read === undefined) continue
      if (!read.ok) {
        this.init.logger.error({ subnet: lease.subnet.toString() }, read.reason)
        this.emit({ type: 'ignored', lease, reason: read.reason })
        await this.dropReplaced(lease, keep)
        return
      }
      const peer = read.plane
      const key = keyOf(peer.family, peer.dst)
      keep.add(key)
      const before = this.wanted.get(key)
      const want: Wanted = { lease, peer, direct: await this.isDirect(peer) }
      try {
        if (before && !sameEntries(before, want)) await this.uninstall(before, local)
        await withRetry(
          () => this.install(want, local),
          this.init.attempts,
          this.init.retryBaseMs,
          () => this.stopped,
        )
        this.wanted.set(key, want)
        applied++
      } catch (error) {
        this.wanted.delete(key)
        this.init.logger.error({ err: error, subnet: peer.dst }, 'failed to add vxlan peer')
        failed = error
      }
    }
    await this.dropReplaced(lease, keep)
    if (failed !== undefined) this.emit({ type: 'failed', action: 'add', lease, error: failed })
    else if (applied > 0) this.emit({ type: 'applied', action: 'add', lease })
  }

  /**
   * Uninstalls the entries an earlier value of the same lease key put in and
   * the new value (entry keys `keep`) no longer wants. A PUT can turn a
   * peer's value into one this network does not use (another backend type,
   * no VtepMAC, one family fewer): the new value replaces the old, and the
   * key's later removal carries the new value, which names no entries, so
   * the old ones would stay with nobody owning them. (flanneld keeps them
   * until it restarts.)
   */
  private async dropReplaced(lease: Lease, keep: ReadonlySet<string>): Promise<void> {
    const id = leaseKey(lease)
    for (const local of this.init.planes) {
      const subnet = local.family === 'inet' ? lease.subnet : lease.ipv6Subnet
      if (subnet === undefined) continue
      const key = keyOf(local.family, normalizeCidr(subnet.toString()))
      const current = this.wanted.get(key)
      if (keep.has(key) || current === undefined || leaseKey(current.lease) !== id) continue
      this.wanted.delete(key)
      try {
        await this.uninstall(current, local)
        this.emit({ type: 'applied', action: 'remove', lease: current.lease })
      } catch (error) {
        this.emit({ type: 'failed', action: 'remove', lease: current.lease, error })
      }
    }
  }

  private async removeLease(lease: Lease): Promise<void> {
    let failed: unknown
    let removed = 0
    let superseded: string | undefined
    for (const local of this.init.planes) {
      const read = peerPlane(lease, local.family)
      if (read === undefined || !read.ok) continue
      const key = keyOf(local.family, read.plane.dst)
      const current = this.wanted.get(key)
      // A late removal of a subnet now held by another host leaves the newer entries alone.
      if (current && (current.peer.pub !== read.plane.pub || current.peer.mac !== read.plane.mac)) {
        superseded = current.peer.pub
        continue
      }
      this.wanted.delete(key)
      const direct = current?.direct ?? (await this.isDirect(read.plane))
      try {
        await this.uninstall({ lease, peer: read.plane, direct }, local)
        removed++
      } catch (error) {
        failed = error
      }
    }
    if (failed !== undefined) this.emit({ type: 'failed', action: 'remove', lease, error: failed })
    else if (removed > 0) this.emit({ type: 'applied', action: 'remove', lease })
    else if (superseded !== undefined) {
      this.emit({
        type: 'ignored',
        lease,
        reason: `removal of ${lease.subnet.toString()} ignored: now held by ${superseded}`,
      })
    }
  }

  /** Direct routing applies when the peer's PublicIP lies in a prefix of the external interface. */
  private async isDirect(peer: PeerPlane): Promise<boolean> {
    if (!this.init.directRouting) return false
    this.extAddresses ??= await this.init.host.listAddresses({ linkIndex: this.init.ext.index })
    return this.extAddresses.some(
      (a) =>
        a.family === peer.family &&
        normalizeCidr(`${a.address}/${a.prefixLength}`) ===
          normalizeCidr(`${peer.pub}/${a.prefixLength}`),
    )
  }

  private directRoute(peer: PeerPlane): Route {
    return {
      family: peer.family,
      dst: peer.dst,
      gateway: peer.pub,
      linkIndex: this.init.ext.index,
      protocol: this.init.routeProtocol,
    }
  }

  private tunnelRoute(peer: PeerPlane, local: LocalPlane): Route {
    return {
      family: peer.family,
      dst: peer.dst,
      gateway: peer.gw,
      linkIndex: local.link.index,
      onlink: true,
      protocol: this.init.routeProtocol,
    }
  }

  /** Writes a peer's entries: neighbour, FDB, then route; a failed step undoes the earlier ones. */
  private async install(want: Wanted, local: LocalPlane): Promise<void> {
    const { host } = this.init
    const { peer } = want
    if (want.direct) {
      await host.replaceRoute(this.directRoute(peer))
      return
    }
    const dev = local.link.index
    await host.replaceNeighbour({ linkIndex: dev, ip: peer.gw, mac: peer.mac })
    try {
      await host.replaceFdb({ linkIndex: dev, mac: peer.mac, dst: peer.pub })
    } catch (error) {
      await ignoreMissing(host.deleteNeighbour({ linkIndex: dev, ip: peer.gw }))
      throw error
    }
    try {
      await host.replaceRoute(this.tunnelRoute(peer, local))
    } catch (error) {
      await ignoreMissing(host.deleteNeighbour({ linkIndex: dev, ip: peer.gw }))
      await ignoreMissing(host.deleteFdb({ linkIndex: dev, mac: peer.mac, dst: peer.pub }))
      throw error
    }
  }

  /** Deletes a peer's entries, each independently; absent entries are fine. */
  private async uninstall(want: Wanted, local: LocalPlane): Promise<void> {
    const { host } = this.init
    const { peer } = want
    if (want.direct) {
      await ignoreMissing(
        host.deleteRoute({
          family: peer.family,
          dst: peer.dst,
          gateway: peer.pub,
          linkIndex: this.init.ext.index,
        }),
      )
      return
    }
    const dev = local.link.index
    // The FDB entry is the VTEP's, not the subnet's: several leases of one host (an old one
    // still running out beside a new one) share it. It goes only with the last of them, and a
    // lease that still names the MAC with another address gets its entry back.
    const others = [...this.wanted.values()].filter(
      (w) =>
        w.peer.family === peer.family &&
        w.peer.dst !== peer.dst &&
        w.peer.mac === peer.mac &&
        !w.direct,
    )
    const fdbShared = others.some((w) => w.peer.pub === peer.pub)
    const results = await Promise.allSettled([
      ignoreMissing(host.deleteNeighbour({ linkIndex: dev, ip: peer.gw })),
      fdbShared
        ? Promise.resolve()
        : ignoreMissing(host.deleteFdb({ linkIndex: dev, mac: peer.mac, dst: peer.pub })),
      ignoreMissing(
        host.deleteRoute({ family: peer.family, dst: peer.dst, gateway: peer.gw, linkIndex: dev }),
      ),
    ])
    const failure = results.find((r): r is PromiseRejectedResult => r.status === 'rejected')
    if (failure) throw failure.reason
    const heir = fdbShared ? undefined : others.at(-1)
    if (heir !== undefined)
      await host.replaceFdb({ linkIndex: dev, mac: heir.peer.mac, dst: heir.peer.pub })
  }

  protected onNotification(n: HostNetworkNotification): void {
    if (n.kind === 'overflow') return this.scheduleCheck(this.init.repairDelayMs)
    const ours = (index: number | undefined): boolean =>
      this.init.planes.some((p) => p.link.index === index)
    switch (n.kind) {
      case 'link': {
        const plane = this.init.planes.find(
          (p) => p.link.index === n.link.index || p.spec.name === n.link.name,
        )
        // Our own MTU writes echo back with the wanted MTU and need no check.
        if (
          plane &&
          (n.action === 'del' ||
            !n.link.up ||
            (plane.spec.mtu !== undefined && n.link.mtu !== plane.spec.mtu))
        ) {
          this.scheduleCheck(this.init.repairDelayMs)
        }
        return
      }
      case 'neighbour':
        if (n.action === 'del' && ours(n.neighbour.linkIndex)) {
          this.scheduleCheck(this.init.repairDelayMs)
        }
        return
      case 'fdb':
        if (n.action === 'del' && ours(n.entry.linkIndex)) {
          this.scheduleCheck(this.init.repairDelayMs)
        }
        return
      case 'route': {
        const w = this.wanted.get(keyOf(n.route.family, n.route.dst))
        if (!w) return
        // Our own writes echo back as 'new' notifications; only a deletion or a foreign change needs a check.
        const gateway = w.direct ? w.peer.pub : w.peer.gw
        if (n.action === 'del' || n.route.gateway !== gateway) {
          this.scheduleCheck(this.init.repairDelayMs)
        }
        return
      }
    }
  }

  /**
   * Compares the kernel with what the leases want: recreates a missing or
   * changed device, re-adds missing entries, and deletes entries on our
   * devices (and our direct routes) that no lease wants.
   */
  protected async check(report: boolean): Promise<void> {
    if (this.stopped || !this.initialBatchDone) return
    this.extAddresses = undefined
    for (const local of this.init.planes) {
      if (this.stopped) return
      try {
        await this.checkPlane(local, report)
      } catch (error) {
        this.emit({ type: 'warning', message: `check of ${local.spec.name} failed`, error })
      }
    }
  }

  private repaired(what: string, detail: string, report: boolean): void {
    if (report) this.init.logger.info({ what, detail }, 'vxlan state repaired')
    this.emit({ type: 'repaired', what, detail })
  }

  private async checkPlane(local: LocalPlane, report: boolean): Promise<void> {
    const { host, config, routeProtocol } = this.init
    const current = await host.getLink(local.spec.name)
    const deviceFine =
      current !== undefined &&
      incompatibility(current, local.spec) === undefined &&
      current.up &&
      current.mac === local.spec.mac
    if (!deviceFine) {
      if (current && current.mac !== local.spec.mac) await host.deleteLink(current.index)
      const { link } = await ensureDevice(host, local.spec, this.init.logger)
      // A kept device (e.g. one only set down) may have another MTU too. MTU first:
      // below 1280 the kernel keeps no IPv6 address on the device.
      local.link = link
      await this.repairMtu(local, report)
      await configureDevice(
        host,
        link,
        local.family,
        local.address,
        (ip) => inPodNetwork(config, ip),
        local.spec.mac,
      )
      if (link.index !== current?.index) await this.init.tuneDevice(local.spec.name)
      local.link = (await host.getLink(link.index)) ?? link
      this.repaired('device', local.spec.name, report)
    } else {
      local.link = current
      await this.repairMtu(local, report)
      const prefix = local.family === 'inet' ? 32 : 128
      const has = (
        await host.listAddresses({ linkIndex: current.index, family: local.family })
      ).some((a) => a.address === local.address && a.prefixLength === prefix)
      if (!has) {
        await configureDevice(
          host,
          current,
          local.family,
          local.address,
          (ip) => inPodNetwork(config, ip),
          local.spec.mac,
        )
        this.repaired('address', `${local.address}/${prefix} on ${local.spec.name}`, report)
      }
    }

    const dev = local.link.index
    const [neighbours, fdb, routes] = await Promise.all([
      host.listNeighbours({ linkIndex: dev, family: local.family }),
      host.listFdb({ linkIndex: dev }),
      host.listRoutes({ family: local.family }),
    ])
    const mine = [...this.wanted.values()].filter((w) => w.peer.family === local.family)
    // Lookups by value (a pass over every entry per peer made a check of N peers quadratic).
    const k = (...parts: (string | number | undefined)[]): string => parts.join('|')
    const neighbourSet = new Set(neighbours.map((n) => k(n.ip, n.mac)))
    const fdbSet = new Set(fdb.map((e) => k(e.mac, e.dst)))
    const routeSet = new Set(routes.map((r) => k(r.dst, r.gateway, r.linkIndex)))

    for (const w of mine) {
      if (this.stopped) return
      const { peer } = w
      const missing: string[] = []
      if (w.direct) {
        if (!routeSet.has(k(peer.dst, peer.pub, this.init.ext.index))) missing.push('route')
      } else {
        if (!neighbourSet.has(k(peer.gw, peer.mac))) missing.push('neighbour')
        if (!fdbSet.has(k(peer.mac, peer.pub))) missing.push('fdb')
        if (!routeSet.has(k(peer.dst, peer.gw, dev))) missing.push('route')
      }
      if (missing.length === 0) continue
      try {
        await this.install(w, local)
        for (const what of missing) this.repaired(what, `${peer.dst} (${what})`, report)
      } catch (error) {
        this.emit({ type: 'warning', message: `could not restore entries of ${peer.dst}`, error })
      }
    }

    // Everything on our own device that no lease wants goes; elsewhere only our direct routes.
    const tunnel = mine.filter((w) => !w.direct)
    const direct = mine.filter((w) => w.direct)
    const tunnelGws = new Set(tunnel.map((w) => w.peer.gw))
    const tunnelFdb = new Set(tunnel.map((w) => k(w.peer.mac, w.peer.pub)))
    const tunnelRoutes = new Set(tunnel.map((w) => k(w.peer.dst, w.peer.gw)))
    const directRoutes = new Set(direct.map((w) => k(w.peer.dst, w.peer.pub)))
    for (const n of neighbours) {
      if (!n.permanent || tunnelGws.has(n.ip)) continue
      await this.removeStale(host.deleteNeighbour({ linkIndex: dev, ip: n.ip }), 'neighbour', n.ip)
    }
    for (const e of fdb) {
      if (e.dst === undefined || tunnelFdb.has(k(e.mac, e.dst))) continue
      await this.removeStale(
        host.deleteFdb({ linkIndex: dev, mac: e.mac, dst: e.dst }),
        'fdb',
        `${e.mac} dst ${e.dst}`,
      )
    }
    for (const r of routes) {
      if (r.linkIndex === dev) {
        if (r.protocol === RTPROT_KERNEL) continue
        if (tunnelRoutes.has(k(r.dst, r.gateway))) continue
      } else if (
        r.linkIndex === this.init.ext.index &&
        r.protocol === routeProtocol &&
        routeProtocol > 4 &&
        r.gateway !== undefined &&
        inPodNetwork(config, r.dst.split('/')[0]!)
      ) {
        if (directRoutes.has(k(r.dst, r.gateway))) continue
      } else continue
      await this.removeStale(
        host.deleteRoute({
          family: local.family,
          dst: r.dst,
          gateway: r.gateway,
          linkIndex: r.linkIndex,
        }),
        'route',
        `${r.dst} via ${r.gateway ?? '-'}`,
      )
    }
  }

  /**
   * Sets the device's MTU back to the wanted one. A failure is a warning and
   * does not keep the rest of the check from running.
   */
  private async repairMtu(local: LocalPlane, report: boolean): Promise<void> {
    const wanted = local.spec.mtu
    if (wanted === undefined) return
    try {
      const previous = await setDeviceMtu(this.init.host, local.link, wanted)
      if (previous === undefined) return
      local.link = { ...local.link, mtu: wanted }
      this.repaired('mtu', `${local.spec.name}: ${previous} -> ${wanted}`, report)
    } catch (error) {
      this.emit({
        type: 'warning',
        message: `could not set the MTU of ${local.spec.name} back to ${wanted}`,
        error,
      })
    }
  }

  private async removeStale(op: Promise<void>, what: string, detail: string): Promise<void> {
    try {
      await ignoreMissing(op)
      this.emit({ type: 'repaired', what: `stale ${what} removed`, detail })
    } catch (error) {
      this.emit({ type: 'warning', message: `could not remove stale ${what} ${detail}`, error })
    }
  }
}

function sameEntries(a: Wanted, b: Wanted): boolean {
  return a.direct === b.direct && a.peer.mac === b.peer.mac && a.peer.pub === b.peer.pub
}

/** True when `ip` lies inside the config's IPv4 or IPv6 pod network. */
export function inPodNetwork(config: NetworkConfig, ip: string): boolean {
  if (ip.includes(':')) return config.ipv6Network?.contains(ip) ?? false
  return config.network?.contains(ip) ?? false
}

async function ignoreMissing(op: Promise<void>): Promise<void> {
  try {
    await op
  } catch (error) {
    if (
      isNetlinkError(error, 'ENOENT') ||
      isNetlinkError(error, 'ESRCH') ||
      isNetlinkError(error, 'ENODEV')
    ) {
      return
    }
    throw error
  }
}
