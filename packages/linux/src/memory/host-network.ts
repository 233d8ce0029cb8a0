import { InvalidArgumentError } from '@flannel/core'
import type { Observable } from 'rxjs'
import { Subject, filter } from 'rxjs'
import {
  cidrContains,
  familyOf,
  normalizeCidr,
  normalizeIp,
  normalizeMac,
  parseCidr,
} from '../address.js'
import { NetlinkError } from '../errors.js'
import { validateVxlanSpec } from '../validate.js'
import { vxlanMaxMtu } from '../vxlan-mtu.js'
import {
  MAIN_TABLE,
  RTPROT_BOOT,
  type FdbEntry,
  type FdbKey,
  type HostNetwork,
  type HostNetworkNotification,
  type Link,
  type LinkAddress,
  type LinkFilter,
  type Neighbour,
  type NeighbourKey,
  type NeighbourSpec,
  type NotificationKind,
  type Route,
  type RouteFilter,
  type RouteKey,
  type VxlanLinkSpec,
} from '../types.js'

/** `rtm_protocol` of routes the kernel adds itself (connected routes). */
const RTPROT_KERNEL = 2
const DEFAULT_VXLAN_PORT = 8472

/** A link to seed a {@link MemoryHostNetwork} with (e.g. the external interface). */
export interface MemoryLinkSpec {
  /** Interface name. */
  readonly name: string
  /** Kind, e.g. `veth` or `bridge`; default `veth`. */
  readonly kind?: string | undefined
  /** MTU; default 1500. */
  readonly mtu?: number | undefined
  /** Hardware address; default a generated one. */
  readonly mac?: string | undefined
  /** Administratively up; default true. */
  readonly up?: boolean | undefined
}

/** A call made to a {@link MemoryHostNetwork}, as recorded in {@link MemoryHostNetwork.calls}. */
export interface MemoryCall {
  /** Method name, e.g. `replaceRoute`. */
  readonly method: string
  /** The arguments. */
  readonly args: readonly unknown[]
}

type Mutable<T> = { -readonly [K in keyof T]: T[K] }

/**
 * An in-memory {@link HostNetwork} with the kernel's semantics for the parts
 * the backends use: `EEXIST` on duplicate creates, `ENOENT`/`ESRCH`/`ENODEV`/
 * `EADDRNOTAVAIL` on missing objects, replace semantics, connected routes for
 * addresses, `ENETUNREACH` for a gateway that is not on-link (unless
 * `onlink`), routes dropped with their link (or when it goes down), a vxlan
 * MTU capped by its lower device ({@link vxlanMaxMtu}) and notifications for
 * changes. For unit tests of backends; no root needed.
 *
 * Faults can be injected with {@link MemoryHostNetwork.failNext}.
 */
export class MemoryHostNetwork implements HostNetwork {
  /** Every mutating call, in order (for assertions). */
  readonly calls: MemoryCall[] = []

  private nextIndex = 1
  private nextMac = 1
  private readonly links = new Map<number, Mutable<Link>>()
  private addresses: LinkAddress[] = []
  private neighbours: Neighbour[] = []
  private fdb: FdbEntry[] = []
  private routes: Route[] = []
  private readonly events = new Subject<HostNetworkNotification>()
  private readonly faults: {
    method: string
    errno: string
    match?: (args: unknown[]) => boolean
  }[] = []

  constructor(seed: { readonly links?: readonly MemoryLinkSpec[] } = {}) {
    this.addLink({ name: 'lo', kind: undefined, mtu: 65536, mac: '00:00:00:00:00:00' })
    for (const link of seed.links ?? []) this.addLink(link)
  }

  /** Adds a plain link (not part of {@link HostNetwork}; for setting up tests). */
  addLink(spec: MemoryLinkSpec): Link {
    this.assertNameFree(spec.name, 'addLink')
    const link: Mutable<Link> = {
      index: this.nextIndex++,
      name: spec.name,
      mtu: spec.mtu ?? 1500,
      mac: spec.mac === undefined ? this.generateMac() : normalizeMac(spec.mac),
      up: spec.up ?? true,
      kind: 'kind' in spec ? spec.kind : 'veth',
    }
    this.links.set(link.index, link)
    this.emit({ kind: 'link', action: 'new', link: { ...link } })
    return { ...link }
  }

  /**
   * Makes the next call of `method` (whose arguments satisfy `match`, if given)
   * fail with `errno`, before it changes anything.
   */
  failNext(method: keyof HostNetwork, errno: string, match?: (args: unknown[]) => boolean): void {
    this.faults.push({ method, errno, ...(match ? { match } : {}) })
  }

  /** Emits an `overflow` notification, as when the kernel drops notifications. */
  simulateOverflow(): void {
    this.emit({ kind: 'overflow' })
  }

  async listLinks(): Promise<Link[]> {
    this.injectFault('listLinks', [])
    return [...this.links.values()].map((l) => ({ ...l }))
  }

  async getLink(nameOrIndex: string | number): Promise<Link | undefined> {
    const link =
      typeof nameOrIndex === 'number'
        ? this.links.get(nameOrIndex)
        : [...this.links.values()].find((l) => l.name === nameOrIndex)
    return link ? { ...link } : undefined
  }

  async createVxlanLink(spec: VxlanLinkSpec): Promise<Link> {
    const op = `createVxlanLink ${spec.name}`
    this.record('createVxlanLink', [spec])
    validateVxlanSpec(spec)
    this.assertNameFree(spec.name, op)
    const port = spec.port ? spec.port : DEFAULT_VXLAN_PORT
    // The kernel keys vxlan sockets by port and address family: an IPv4 and an
    // IPv6 device may share a VNI and port (flannel.<VNI> and flannel-v6.<VNI>).
    const family = vxlanFamily(spec.local)
    for (const l of this.links.values()) {
      if (
        l.vxlan &&
        l.vxlan.vni === spec.vni &&
        l.vxlan.port === port &&
        vxlanFamily(l.vxlan.local) === family
      )
        throw new NetlinkError(op, 'EEXIST')
    }
    const lower = spec.lowerIndex === undefined ? undefined : this.links.get(spec.lowerIndex)
    if (spec.lowerIndex !== undefined && lower === undefined) throw new NetlinkError(op, 'ENODEV')
    // Like the kernel: over a lower device the MTU is at most its MTU less the VXLAN headroom.
    const maxMtu = lower === undefined ? 65535 : vxlanMaxMtu(lower.mtu, spec.local)
    const link: Mutable<Link> = {
      index: this.nextIndex++,
      name: spec.name,
      mtu: Math.min(spec.mtu ?? (lower === undefined ? 1450 : maxMtu), maxMtu),
      mac: spec.mac === undefined ? this.generateMac() : normalizeMac(spec.mac),
      up: false,
      kind: 'vxlan',
      vxlan: {
        vni: spec.vni,
        local: spec.local === undefined ? undefined : normalizeIp(spec.local, 'local'),
        lowerIndex: spec.lowerIndex,
        port,
        learning: spec.learning ?? false,
        gbp: spec.gbp ?? false,
      },
    }
    this.links.set(link.index, link)
    this.emit({ kind: 'link', action: 'new', link: { ...link } })
    return { ...link }
  }

  async setLinkMtu(index: number, mtu: number): Promise<void> {
    this.record('setLinkMtu', [index, mtu])
    const link = this.requireLink(index, `setLinkMtu ${index}`)
    if (!Number.isInteger(mtu) || mtu < 68 || mtu > 65535)
      throw new NetlinkError(`setLinkMtu ${index}`, 'EINVAL')
    const lower =
      link.vxlan?.lowerIndex === undefined ? undefined : this.links.get(link.vxlan.lowerIndex)
    if (lower !== undefined && mtu > vxlanMaxMtu(lower.mtu, link.vxlan?.local))
      throw new NetlinkError(`setLinkMtu ${index}`, 'EINVAL')
    link.mtu = mtu
    this.emit({ kind: 'link', action: 'new', link: { ...link } })
  }

  async setLinkUp(index: number, up: boolean): Promise<void> {
    this.record('setLinkUp', [index, up])
    const link = this.requireLink(index, `setLinkUp ${index}`)
    link.up = up
    // Like the kernel: routes through a link go when it goes down; connected routes come back with it.
    if (!up) this.routes = this.routes.filter((r) => r.linkIndex !== index)
    else for (const a of this.addresses) if (a.linkIndex === index) this.addConnectedRoute(a)
    this.emit({ kind: 'link', action: 'new', link: { ...link } })
  }

  async deleteLink(index: number): Promise<void> {
    this.record('deleteLink', [index])
    const link = this.requireLink(index, `deleteLink ${index}`)
    this.links.delete(index)
    this.addresses = this.addresses.filter((a) => a.linkIndex !== index)
    this.neighbours = this.neighbours.filter((n) => n.linkIndex !== index)
    this.fdb = this.fdb.filter((f) => f.linkIndex !== index)
    this.routes = this.routes.filter((r) => r.linkIndex !== index)
    this.emit({ kind: 'link', action: 'del', link: { ...link } })
  }

  async listAddresses(f: LinkFilter = {}): Promise<LinkAddress[]> {
    this.injectFault('listAddresses', [f])
    return this.addresses.filter((a) => matchesLinkFilter(a, f)).map((a) => ({ ...a }))
  }

  async addAddress(address: LinkAddress): Promise<void> {
    const op = `addAddress ${address.address}/${address.prefixLength}`
    this.record('addAddress', [address])
    this.requireLink(address.linkIndex, op)
    const a = normalizeAddress(address)
    if (this.addresses.some((x) => sameAddress(x, a))) throw new NetlinkError(op, 'EEXIST')
    this.addresses.push(a)
    this.addConnectedRoute(a)
  }

  async deleteAddress(address: LinkAddress): Promise<void> {
    const op = `deleteAddress ${address.address}/${address.prefixLength}`
    this.record('deleteAddress', [address])
    const a = normalizeAddress(address)
    const before = this.addresses.length
    this.addresses = this.addresses.filter((x) => !sameAddress(x, a))
    if (this.addresses.length === before) throw new NetlinkError(op, 'EADDRNOTAVAIL')
    const connected = parseCidr(`${a.address}/${a.prefixLength}`)
    const dst = `${connected.address}/${connected.prefixLength}`
    this.routes = this.routes.filter(
      (r) => !(r.protocol === RTPROT_KERNEL && r.dst === dst && r.linkIndex === a.linkIndex),
    )
  }

  async listNeighbours(f: LinkFilter = {}): Promise<Neighbour[]> {
    this.injectFault('listNeighbours', [f])
    return this.neighbours.filter((n) => matchesLinkFilter(n, f)).map((n) => ({ ...n }))
  }

  async replaceNeighbour(spec: NeighbourSpec): Promise<void> {
    const op = `replaceNeighbour ${spec.ip}`
    this.record('replaceNeighbour', [spec])
    const n: Neighbour = {
      linkIndex: spec.linkIndex,
      family: familyOf(spec.ip, 'neighbour ip'),
      ip: normalizeIp(spec.ip, 'neighbour ip'),
      mac: normalizeMac(spec.mac),
      permanent: true,
    }
    this.requireLink(spec.linkIndex, op)
    const i = this.neighbours.findIndex((x) => x.linkIndex === n.linkIndex && x.ip === n.ip)
    if (i >= 0) this.neighbours[i] = n
    else this.neighbours.push(n)
    this.emit({ kind: 'neighbour', action: 'new', neighbour: { ...n } })
  }

  async deleteNeighbour(key: NeighbourKey): Promise<void> {
    const op = `deleteNeighbour ${key.ip}`
    this.record('deleteNeighbour', [key])
    const ip = normalizeIp(key.ip, 'neighbour ip')
    this.requireLink(key.linkIndex, op)
    const i = this.neighbours.findIndex((x) => x.linkIndex === key.linkIndex && x.ip === ip)
    if (i < 0) throw new NetlinkError(op, 'ENOENT')
    const [removed] = this.neighbours.splice(i, 1)
    this.emit({ kind: 'neighbour', action: 'del', neighbour: { ...removed! } })
  }

  async listFdb(f: { readonly linkIndex?: number | undefined } = {}): Promise<FdbEntry[]> {
    this.injectFault('listFdb', [f])
    return this.fdb
      .filter((e) => f.linkIndex === undefined || e.linkIndex === f.linkIndex)
      .map((e) => ({ ...e }))
  }

  async appendFdb(key: FdbKey): Promise<void> {
    const op = `appendFdb ${key.mac}`
    this.record('appendFdb', [key])
    const e = normalizeFdb(key)
    this.requireLink(key.linkIndex, op)
    if (this.fdb.some((x) => sameFdb(x, e))) return
    this.fdb.push(e)
    this.emit({ kind: 'fdb', action: 'new', entry: { ...e } })
  }

  async replaceFdb(key: FdbKey): Promise<void> {
    const op = `replaceFdb ${key.mac}`
    this.record('replaceFdb', [key])
    const e = normalizeFdb(key)
    this.requireLink(key.linkIndex, op)
    const i = this.fdb.findIndex((x) => x.linkIndex === e.linkIndex && x.mac === e.mac)
    if (i >= 0) this.fdb[i] = e
    else this.fdb.push(e)
    this.emit({ kind: 'fdb', action: 'new', entry: { ...e } })
  }

  async deleteFdb(key: FdbKey): Promise<void> {
    const op = `deleteFdb ${key.mac}`
    this.record('deleteFdb', [key])
    const e = normalizeFdb(key)
    this.requireLink(key.linkIndex, op)
    const i = this.fdb.findIndex(
      (x) =>
        x.linkIndex === e.linkIndex && x.mac === e.mac && (e.dst === undefined || x.dst === e.dst),
    )
    if (i < 0) throw new NetlinkError(op, 'ENOENT')
    const [removed] = this.fdb.splice(i, 1)
    this.emit({ kind: 'fdb', action: 'del', entry: { ...removed! } })
  }

  async listRoutes(f: RouteFilter = {}): Promise<Route[]> {
    this.injectFault('listRoutes', [f])
    const table = f.table ?? MAIN_TABLE
    return this.routes
      .filter(
        (r) =>
          (r.table ?? MAIN_TABLE) === table &&
          (r.type ?? 'unicast') === (f.type ?? 'unicast') &&
          (f.family === undefined || r.family === f.family) &&
          (f.protocol === undefined || r.protocol === f.protocol) &&
          (f.linkIndex === undefined || r.linkIndex === f.linkIndex),
      )
      .map((r) => ({ ...r }))
  }

  async addRoute(route: Route): Promise<void> {
    this.record('addRoute', [route])
    const r = this.checkRoute(route, `addRoute ${route.dst}`)
    if (this.routes.some((x) => sameRouteSlot(x, r)))
      throw new NetlinkError(`addRoute ${route.dst}`, 'EEXIST')
    this.routes.push(r)
    this.emitRoute('new', r)
  }

  async replaceRoute(route: Route): Promise<void> {
    this.record('replaceRoute', [route])
    const r = this.checkRoute(route, `replaceRoute ${route.dst}`)
    const i = this.routes.findIndex((x) => sameRouteSlot(x, r))
    if (i >= 0) this.routes[i] = r
    else this.routes.push(r)
    this.emitRoute('new', r)
  }

  async deleteRoute(key: RouteKey): Promise<void> {
    const op = `deleteRoute ${key.dst}`
    this.record('deleteRoute', [key])
    const dst = normalizeCidr(key.dst)
    const gateway = key.gateway === undefined ? undefined : normalizeIp(key.gateway, 'gateway')
    const table = key.table ?? MAIN_TABLE
    const i = this.routes.findIndex(
      (r) =>
        r.family === key.family &&
        r.dst === dst &&
        (r.table ?? MAIN_TABLE) === table &&
        (key.protocol === undefined || r.protocol === key.protocol) &&
        (key.type === undefined || (r.type ?? 'unicast') === key.type) &&
        (gateway === undefined || r.gateway === gateway) &&
        (key.linkIndex === undefined || r.linkIndex === key.linkIndex) &&
        (key.priority === undefined || (r.priority ?? 0) === key.priority),
    )
    if (i < 0) throw new NetlinkError(op, 'ESRCH')
    const [removed] = this.routes.splice(i, 1)
    this.emitRoute('del', removed!)
  }

  notifications(kinds?: readonly NotificationKind[]): Observable<HostNetworkNotification> {
    const wanted = new Set<string>(kinds ?? ['link', 'route', 'neighbour', 'fdb'])
    return this.events.pipe(filter((n) => n.kind === 'overflow' || wanted.has(n.kind)))
  }

  /** Number of open notification subscriptions (to check that they are closed). */
  get subscriberCount(): number {
    return this.events.observed
      ? (this.events as unknown as { observers: unknown[] }).observers.length
      : 0
  }

  async close(): Promise<void> {}

  /** Route notifications, like the netlink ones, carry unicast routes only. */
  private emitRoute(action: 'new' | 'del', route: Route): void {
    if (route.type === undefined) this.emit({ kind: 'route', action, route: { ...route } })
  }

  private checkRoute(route: Route, op: string): Route {
    const dst = parseCidr(route.dst)
    if (dst.family !== route.family) {
      throw new InvalidArgumentError(
        'route family',
        route.family,
        `does not match destination ${route.dst}`,
      )
    }
    if (route.type === 'blackhole') {
      if (route.gateway !== undefined || route.linkIndex !== undefined)
        throw new NetlinkError(op, 'EINVAL')
      return {
        family: route.family,
        type: 'blackhole',
        dst: `${dst.address}/${dst.prefixLength}`,
        protocol: route.protocol ?? RTPROT_BOOT,
        table: route.table ?? MAIN_TABLE,
        priority: route.priority,
        scope: route.scope ?? 'universe',
      }
    }
    const gateway = route.gateway === undefined ? undefined : normalizeIp(route.gateway, 'gateway')
    if (gateway !== undefined && familyOf(gateway) !== route.family) {
      throw new InvalidArgumentError('gateway', route.gateway, `not an ${route.family} address`)
    }
    if (route.linkIndex === undefined && gateway === undefined) throw new NetlinkError(op, 'EINVAL')
    if (route.linkIndex !== undefined) {
      const link = this.requireLink(route.linkIndex, op)
      if (!link.up) throw new NetlinkError(op, 'ENETDOWN')
    }
    if (gateway !== undefined && !route.onlink) {
      const onLink = this.routes.some(
        (r) =>
          r.gateway === undefined &&
          r.linkIndex !== undefined &&
          (route.linkIndex === undefined || r.linkIndex === route.linkIndex) &&
          cidrContains(parseCidr(r.dst), gateway),
      )
      if (!onLink) throw new NetlinkError(op, 'ENETUNREACH')
    }
    let linkIndex = route.linkIndex
    if (linkIndex === undefined && gateway !== undefined) {
      linkIndex = this.routes.find(
        (r) =>
          r.gateway === undefined &&
          r.linkIndex !== undefined &&
          cidrContains(parseCidr(r.dst), gateway),
      )?.linkIndex
    }
    return {
      family: route.family,
      dst: `${dst.address}/${dst.prefixLength}`,
      gateway,
      linkIndex,
      onlink: route.onlink ? true : undefined,
      protocol: route.protocol ?? RTPROT_BOOT,
      table: route.table ?? MAIN_TABLE,
      priority: route.priority,
      src: route.src === undefined ? undefined : normalizeIp(route.src, 'src'),
      scope: route.scope ?? (gateway === undefined ? 'link' : 'universe'),
    }
  }

  /** The prefix route the kernel adds for an address (none for host addresses). */
  private addConnectedRoute(a: LinkAddress): void {
    const connected = parseCidr(`${a.address}/${a.prefixLength}`)
    const dst = `${connected.address}/${connected.prefixLength}`
    const hostBits = a.family === 'inet' ? 32 : 128
    if (a.prefixLength === hostBits) return
    if (
      this.routes.some(
        (r) => r.protocol === RTPROT_KERNEL && r.dst === dst && r.linkIndex === a.linkIndex,
      )
    )
      return
    this.routes.push({
      family: a.family,
      dst,
      linkIndex: a.linkIndex,
      protocol: RTPROT_KERNEL,
      table: MAIN_TABLE,
      src: a.family === 'inet' ? a.address : undefined,
      scope: 'link',
    })
  }

  private record(method: string, args: unknown[]): void {
    this.calls.push({ method, args })
    this.injectFault(method, args)
  }

  private injectFault(method: string, args: unknown[]): void {
    const i = this.faults.findIndex((f) => f.method === method && (!f.match || f.match(args)))
    if (i >= 0) {
      const [fault] = this.faults.splice(i, 1)
      throw new NetlinkError(`${method} (injected)`, fault!.errno)
    }
  }

  private requireLink(index: number, op: string): Mutable<Link> {
    const link = this.links.get(index)
    if (!link) throw new NetlinkError(op, 'ENODEV')
    return link
  }

  private assertNameFree(name: string, op: string): void {
    if (name.length === 0 || name.length > 15) {
      throw new InvalidArgumentError('link name', name, 'must be 1 to 15 characters')
    }
    if ([...this.links.values()].some((l) => l.name === name)) throw new NetlinkError(op, 'EEXIST')
  }

  private generateMac(): string {
    const n = this.nextMac++
    return normalizeMac(`0e:00:00:00:${((n >> 8) & 255).toString(16)}:${(n & 255).toString(16)}`)
  }

  private emit(n: HostNetworkNotification): void {
    this.events.next(n)
  }
}

function matchesLinkFilter(x: { linkIndex: number; family: string }, f: LinkFilter): boolean {
  return (
    (f.linkIndex === undefined || x.linkIndex === f.linkIndex) &&
    (f.family === undefined || x.family === f.family)
  )
}

function normalizeAddress(a: LinkAddress): LinkAddress {
  const family = familyOf(a.address)
  const max = family === 'inet' ? 32 : 128
  if (!Number.isInteger(a.prefixLength) || a.prefixLength < 0 || a.prefixLength > max) {
    throw new InvalidArgumentError('prefix length', a.prefixLength, `must be 0..${max}`)
  }
  return {
    linkIndex: a.linkIndex,
    family,
    address: normalizeIp(a.address),
    prefixLength: a.prefixLength,
  }
}

function sameAddress(a: LinkAddress, b: LinkAddress): boolean {
  return a.linkIndex === b.linkIndex && a.address === b.address && a.prefixLength === b.prefixLength
}

function normalizeFdb(k: FdbKey): FdbEntry {
  return {
    linkIndex: k.linkIndex,
    mac: normalizeMac(k.mac),
    dst: k.dst === undefined ? undefined : normalizeIp(k.dst, 'dst'),
    self: true,
    permanent: true,
  }
}

function sameFdb(a: FdbEntry, b: FdbEntry): boolean {
  return a.linkIndex === b.linkIndex && a.mac === b.mac && a.dst === b.dst
}

/** The kernel keys routes of a table by destination, TOS and priority. */
function sameRouteSlot(a: Route, b: Route): boolean {
  return (
    a.family === b.family &&
    a.dst === b.dst &&
    (a.table ?? MAIN_TABLE) === (b.table ?? MAIN_TABLE) &&
    (a.priority ?? 0) === (b.priority ?? 0)
  )
}

/** The socket family a vxlan device binds: IPv6 when its local address is IPv6, else IPv4. */
function vxlanFamily(local: string | undefined): 'inet' | 'inet6' {
  return local !== undefined && local.includes(':') ? 'inet6' : 'inet'
}
