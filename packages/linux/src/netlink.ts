import type * as Netlink from 'netlink'
import { Observable } from 'rxjs'
import type { Logger } from '@flannel/core'
import { silentLogger } from '@flannel/core'
import { bytesToIp, bytesToMac, familyOf, ipToBytes, macToBytes, parseCidr } from './address.js'
import { NetlinkError, toNetlinkError } from './errors.js'
import {
  MAIN_TABLE,
  RTPROT_BOOT,
  type AddressFamily,
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
  type RouteScope,
  type RouteType,
  type VxlanLinkSpec,
} from './types.js'
import { validateVxlanSpec } from './validate.js'

type NetlinkModule = typeof Netlink
type RtSocket = Netlink.RtNetlinkSocket

const AF_INET = 2
const AF_INET6 = 10
const AF_BRIDGE = 7
const RTNH_F_ONLINK = 4
// NLM_F_* flags of new-object requests (not set by the netlink package by default).
const NLM_F_REPLACE = 0x100
const NLM_F_EXCL = 0x200
const NLM_F_CREATE = 0x400
const NLM_F_APPEND = 0x800
const RT_SCOPE_UNIVERSE = 0
const RT_SCOPE_LINK = 253
const RT_SCOPE_HOST = 254
const RT_SCOPE_NOWHERE = 255
const RTN_UNICAST = 1
const RTN_BLACKHOLE = 6
// rtnetlink message types of notifications.
const RTM_NEWLINK = 16
const RTM_DELLINK = 17
const RTM_NEWROUTE = 24
const RTM_DELROUTE = 25
const RTM_NEWNEIGH = 28
const RTM_DELNEIGH = 29

let modulePromise: Promise<NetlinkModule> | undefined

/** Loads the `netlink` package (and its native addon) on first use. */
function loadNetlink(): Promise<NetlinkModule> {
  modulePromise ??= import('netlink').then(
    (m) => ((m as { default?: NetlinkModule }).default ?? m) as NetlinkModule,
  )
  return modulePromise
}

/** Options of {@link NetlinkHostNetwork}. */
export interface NetlinkHostNetworkOptions {
  /** Milliseconds after which a kernel request fails with `ETIMEDOUT`; default 5000. */
  readonly requestTimeoutMs?: number | undefined
  /** Receive buffer of notification sockets in bytes; default 4 MiB. */
  readonly notificationBufferBytes?: number | undefined
  /** Logger; silent by default. */
  readonly logger?: Logger | undefined
}

/**
 * {@link HostNetwork} over rtnetlink (the `netlink` package), acting on the
 * network namespace of the calling process. To act on another namespace, run
 * the process in it (`ip netns exec <ns> node ...`).
 */
export class NetlinkHostNetwork implements HostNetwork {
  private socket: RtSocket | undefined
  /** The request socket's netlink port, read once (the package asks the kernel per message otherwise). */
  private localPort: number | undefined
  /**
   * One request in flight at a time: the netlink package groups multipart
   * (dump) replies by arrival order, so an ACK of a concurrent request landing
   * between two parts of a dump breaks the dump ("Multipart message not
   * terminated properly"), and the kernel refuses a second concurrent dump.
   */
  private inFlight: Promise<unknown> = Promise.resolve()
  private readonly timeout: number
  private readonly bufferBytes: number
  private readonly logger: Logger

  constructor(options: NetlinkHostNetworkOptions = {}) {
    this.timeout = options.requestTimeoutMs ?? 5000
    this.bufferBytes = options.notificationBufferBytes ?? 4 * 1024 * 1024
    this.logger = options.logger ?? silentLogger
  }

  async listLinks(): Promise<Link[]> {
    return this.call('listLinks', async (s, nl) =>
      (await s.getLinks(undefined, undefined, this.opts())).map((m) => toLink(m, nl)),
    )
  }

  async getLink(nameOrIndex: string | number): Promise<Link | undefined> {
    const links = await this.listLinks()
    return links.find((l) =>
      typeof nameOrIndex === 'number' ? l.index === nameOrIndex : l.name === nameOrIndex,
    )
  }

  async createVxlanLink(spec: VxlanLinkSpec): Promise<Link> {
    validateVxlanSpec(spec)
    const op = `createVxlanLink ${spec.name}`
    await this.call(op, async (s, nl) => {
      const local = spec.local === undefined ? undefined : ipToBytes(spec.local, 'local')
      const vxlan: Netlink.ifla.Vxlan = {
        id: spec.vni,
        learning: spec.learning ? 1 : 0,
        ...(local?.length === 4 ? { local } : {}),
        ...(local?.length === 16 ? { local6: local } : {}),
        ...(spec.lowerIndex !== undefined ? { link: spec.lowerIndex } : {}),
        ...(spec.port ? { port: u16be(spec.port) } : {}),
        ...(spec.gbp ? { gbp: true as const } : {}),
      }
      const data = serialize(nl, nl.ifla.formatVxlan(vxlan))
      const linkinfo = serialize(nl, nl.ifla.formatInfo({ kind: 'vxlan', data }))
      const attrs: Netlink.ifla.LinkAttrs = {
        ifname: spec.name,
        linkinfo,
        ...(spec.mtu !== undefined ? { mtu: spec.mtu } : {}),
        ...(spec.mac !== undefined ? { address: macToBytes(spec.mac) } : {}),
      }
      await s.newLink({ family: 0 }, attrs, this.opts(NLM_F_CREATE | NLM_F_EXCL))
    })
    const link = await this.getLink(spec.name)
    if (!link) throw new NetlinkError(op, 'ENODEV', { detail: 'link vanished after creation' })
    return link
  }

  async setLinkMtu(index: number, mtu: number): Promise<void> {
    await this.call(`setLinkMtu ${index}`, (s) => s.setLink({ index }, { mtu }, this.opts()))
  }

  async setLinkUp(index: number, up: boolean): Promise<void> {
    await this.call(`setLinkUp ${index}`, (s) =>
      s.setLink({ index, flags: up ? { up: true } : {}, change: { up: true } }, {}, this.opts()),
    )
  }

  async deleteLink(index: number): Promise<void> {
    await this.call(`deleteLink ${index}`, (s) => s.delLink({ index }, {}, this.opts()))
  }

  async listAddresses(filter: LinkFilter = {}): Promise<LinkAddress[]> {
    const family = filter.family === undefined ? 0 : afNumber(filter.family)
    return this.call('listAddresses', async (s) => {
      const msgs = await s.getAddresses({ family }, undefined, this.opts())
      const out: LinkAddress[] = []
      for (const m of msgs) {
        const bytes = m.attrs.local ?? m.attrs.address
        const fam = afName(m.data.family)
        if (!bytes || !fam || m.data.index === undefined) continue
        if (filter.linkIndex !== undefined && m.data.index !== filter.linkIndex) continue
        out.push({
          linkIndex: m.data.index,
          family: fam,
          address: bytesToIp(bytes),
          prefixLength: m.data.prefixlen ?? 0,
        })
      }
      return out
    })
  }

  async addAddress(address: LinkAddress): Promise<void> {
    const bytes = ipToBytes(address.address)
    await this.call(`addAddress ${address.address}/${address.prefixLength}`, (s) =>
      s.newAddress(
        {
          family: afNumber(familyOf(address.address)),
          prefixlen: address.prefixLength,
          index: address.linkIndex,
        },
        { local: bytes, address: bytes },
        this.opts(NLM_F_CREATE | NLM_F_EXCL),
      ),
    )
  }

  async deleteAddress(address: LinkAddress): Promise<void> {
    const bytes = ipToBytes(address.address)
    await this.call(`deleteAddress ${address.address}/${address.prefixLength}`, (s) =>
      s.delAddress(
        {
          family: afNumber(familyOf(address.address)),
          prefixlen: address.prefixLength,
          index: address.linkIndex,
        },
        { local: bytes, address: bytes },
        this.opts(),
      ),
    )
  }

  async listNeighbours(filter: LinkFilter = {}): Promise<Neighbour[]> {
    const families: AddressFamily[] = filter.family ? [filter.family] : ['inet', 'inet6']
    return this.call('listNeighbours', async (s) => {
      const out: Neighbour[] = []
      for (const family of families) {
        const msgs = await s.getNeighbors({ family: afNumber(family) }, undefined, this.opts())
        for (const m of msgs) {
          const n = toNeighbour(m)
          if (n && (filter.linkIndex === undefined || n.linkIndex === filter.linkIndex)) out.push(n)
        }
      }
      return out
    })
  }

  async replaceNeighbour(spec: NeighbourSpec): Promise<void> {
    const family = afNumber(familyOf(spec.ip, 'neighbour ip'))
    const dst = ipToBytes(spec.ip, 'neighbour ip')
    const lladdr = macToBytes(spec.mac)
    await this.call(`replaceNeighbour ${spec.ip}`, (s) =>
      s.newNeighbor(
        { family, ifindex: spec.linkIndex, state: { permanent: true } },
        { dst, lladdr },
        this.opts(NLM_F_CREATE | NLM_F_REPLACE),
      ),
    )
  }

  async deleteNeighbour(key: NeighbourKey): Promise<void> {
    const family = afNumber(familyOf(key.ip, 'neighbour ip'))
    const dst = ipToBytes(key.ip, 'neighbour ip')
    await this.call(`deleteNeighbour ${key.ip}`, (s) =>
      s.delNeighbor({ family, ifindex: key.linkIndex }, { dst }, this.opts()),
    )
  }

  async listFdb(filter: { readonly linkIndex?: number | undefined } = {}): Promise<FdbEntry[]> {
    return this.call('listFdb', async (s) => {
      const msgs = await s.getNeighbors({ family: AF_BRIDGE }, undefined, this.opts())
      const out: FdbEntry[] = []
      for (const m of msgs) {
        const e = toFdbEntry(m)
        if (e && (filter.linkIndex === undefined || e.linkIndex === filter.linkIndex)) out.push(e)
      }
      return out
    })
  }

  async appendFdb(entry: FdbKey): Promise<void> {
    await this.writeFdb('appendFdb', entry, NLM_F_CREATE | NLM_F_APPEND)
  }

  async replaceFdb(entry: FdbKey): Promise<void> {
    await this.writeFdb('replaceFdb', entry, NLM_F_CREATE | NLM_F_REPLACE)
  }

  async deleteFdb(key: FdbKey): Promise<void> {
    const lladdr = macToBytes(key.mac)
    const dst = key.dst === undefined ? undefined : ipToBytes(key.dst, 'dst')
    await this.call(`deleteFdb ${key.mac}`, (s) =>
      s.delNeighbor(
        { family: AF_BRIDGE, ifindex: key.linkIndex, flags: { self: true } },
        { lladdr, ...(dst ? { dst } : {}) },
        this.opts(),
      ),
    )
  }

  async listRoutes(filter: RouteFilter = {}): Promise<Route[]> {
    const families: AddressFamily[] = filter.family ? [filter.family] : ['inet', 'inet6']
    const table = filter.table ?? MAIN_TABLE
    return this.call('listRoutes', async (s) => {
      const out: Route[] = []
      for (const family of families) {
        const msgs = await s.getRoutes({ family: afNumber(family) }, undefined, this.opts())
        for (const m of msgs) {
          const r = toRoute(m)
          if (!r) continue
          if ((r.type ?? 'unicast') !== (filter.type ?? 'unicast')) continue
          if ((r.table ?? MAIN_TABLE) !== table) continue
          if (filter.protocol !== undefined && r.protocol !== filter.protocol) continue
          if (filter.linkIndex !== undefined && r.linkIndex !== filter.linkIndex) continue
          out.push(r)
        }
      }
      return out
    })
  }

  async addRoute(route: Route): Promise<void> {
    await this.writeRoute('addRoute', route, NLM_F_CREATE | NLM_F_EXCL)
  }

  async replaceRoute(route: Route): Promise<void> {
    await this.writeRoute('replaceRoute', route, NLM_F_CREATE | NLM_F_REPLACE)
  }

  async deleteRoute(key: RouteKey): Promise<void> {
    const dst = parseCidr(key.dst)
    const table = key.table ?? MAIN_TABLE
    await this.call(`deleteRoute ${key.dst}`, (s) =>
      s.delRoute(
        {
          family: afNumber(key.family),
          dstLen: dst.prefixLength,
          table: table < 256 ? table : 0,
          scope: RT_SCOPE_NOWHERE,
          ...(key.protocol !== undefined ? { protocol: key.protocol } : {}),
          ...(key.type !== undefined ? { type: typeNumber(key.type) } : {}),
        },
        {
          dst: ipToBytes(dst.address),
          table,
          ...(key.gateway !== undefined ? { gateway: ipToBytes(key.gateway, 'gateway') } : {}),
          ...(key.linkIndex !== undefined ? { oif: key.linkIndex } : {}),
          ...(key.priority !== undefined ? { priority: key.priority } : {}),
        },
        this.opts(),
      ),
    )
  }

  notifications(kinds?: readonly NotificationKind[]): Observable<HostNetworkNotification> {
    const wanted = new Set<NotificationKind>(kinds ?? ['link', 'route', 'neighbour', 'fdb'])
    return new Observable<HostNetworkNotification>((subscriber) => {
      let socket: RtSocket | undefined
      let closed = false
      loadNetlink()
        .then((nl) => {
          if (closed) return
          // SO_RCVBUF large enough for bursts; overflow still surfaces as ENOBUFS -> 'overflow'.
          socket = nl.createRtNetlink({
            ref: true,
            recvBufferSize: this.bufferBytes,
            sendBufferSize: 0,
          })
          const raw = socket.socket
          const groups: (keyof typeof Netlink.rt.MulticastGroups)[] = []
          if (wanted.has('link')) groups.push('LINK')
          if (wanted.has('route')) groups.push('IPV4_ROUTE', 'IPV6_ROUTE')
          if (wanted.has('neighbour') || wanted.has('fdb')) groups.push('NEIGH')
          for (const g of groups) socket.addMembership(g)
          raw.on('error', (error) => {
            if ((error as { code?: string }).code === 'ENOBUFS')
              subscriber.next({ kind: 'overflow' })
            else subscriber.error(toNetlinkError('notifications', error))
          })
          raw.on('message', (msgs) => {
            for (const m of msgs) {
              let n: HostNetworkNotification | undefined
              try {
                n = toNotification(nl, m.type, m.data)
              } catch (error) {
                this.logger.debug({ err: error, type: m.type }, 'unparsable rtnetlink notification')
              }
              if (n && n.kind !== 'overflow' && wanted.has(n.kind)) subscriber.next(n)
            }
          })
        })
        .catch((error: unknown) => subscriber.error(toNetlinkError('notifications', error)))
      return () => {
        closed = true
        socket?.socket.close()
        socket = undefined
      }
    })
  }

  async close(): Promise<void> {
    this.socket?.socket.close()
    this.socket = undefined
    this.localPort = undefined
  }

  private async writeFdb(method: string, entry: FdbKey, flags: number): Promise<void> {
    const lladdr = macToBytes(entry.mac)
    const dst = entry.dst === undefined ? undefined : ipToBytes(entry.dst, 'dst')
    await this.call(`${method} ${entry.mac}`, (s) =>
      s.newNeighbor(
        {
          family: AF_BRIDGE,
          ifindex: entry.linkIndex,
          state: { permanent: true },
          flags: { self: true },
        },
        { lladdr, ...(dst ? { dst } : {}) },
        this.opts(flags),
      ),
    )
  }

  private async writeRoute(method: string, route: Route, flags: number): Promise<void> {
    const dst = parseCidr(route.dst)
    const table = route.table ?? MAIN_TABLE
    const gateway = route.gateway === undefined ? undefined : ipToBytes(route.gateway, 'gateway')
    if (
      dst.family !== route.family ||
      (gateway && gateway.length !== ipToBytes(dst.address).length)
    ) {
      throw new NetlinkError(`${method} ${route.dst}`, 'EINVAL', {
        detail: 'address families differ',
      })
    }
    const blackhole = route.type === 'blackhole'
    if (blackhole && (gateway !== undefined || route.linkIndex !== undefined)) {
      throw new NetlinkError(`${method} ${route.dst}`, 'EINVAL', {
        detail: 'a blackhole route has no gateway and no device',
      })
    }
    await this.call(`${method} ${route.dst}`, (s) =>
      s.newRoute(
        {
          family: afNumber(route.family),
          dstLen: dst.prefixLength,
          table: table < 256 ? table : 0,
          protocol: route.protocol ?? RTPROT_BOOT,
          // iproute2's defaults: link scope only for a unicast route without a gateway
          scope: scopeNumber(route.scope ?? (gateway || blackhole ? 'universe' : 'link')),
          type: typeNumber(route.type ?? 'unicast'),
          ...(route.onlink ? { flags: { __unknown: RTNH_F_ONLINK } } : {}),
        },
        {
          dst: ipToBytes(dst.address),
          table,
          ...(gateway ? { gateway } : {}),
          ...(route.linkIndex !== undefined ? { oif: route.linkIndex } : {}),
          ...(route.priority !== undefined ? { priority: route.priority } : {}),
          ...(route.src !== undefined ? { prefsrc: ipToBytes(route.src, 'src') } : {}),
        },
        this.opts(flags),
      ),
    )
  }

  private opts(flags = 0): Netlink.RtNetlinkSendOptions & Netlink.RequestOptions {
    return {
      flags,
      timeout: this.timeout,
      ...(this.localPort !== undefined ? { localPort: this.localPort } : {}),
    }
  }

  private async call<T>(
    operation: string,
    fn: (socket: RtSocket, nl: NetlinkModule) => Promise<T>,
  ): Promise<T> {
    let nl: NetlinkModule
    try {
      nl = await loadNetlink()
    } catch (error) {
      throw toNetlinkError(operation, error)
    }
    if (!this.socket) {
      const socket = nl.createRtNetlink({ recvBufferSize: 1024 * 1024, sendBufferSize: 0 })
      // A request socket never joins groups; errors surface through the pending requests.
      socket.socket.on('error', (error) =>
        this.logger.warn({ err: error }, 'rtnetlink socket error'),
      )
      this.socket = socket
      this.localPort = socket.socket.address().port
    }
    const socket = this.socket
    const request = this.inFlight.then(() => fn(socket, nl))
    this.inFlight = request.catch(() => undefined)
    try {
      return await request
    } catch (error) {
      const wrapped = toNetlinkError(operation, error)
      if (/timed? ?out/i.test(String((error as Error)?.message)) && wrapped.errno === 'EUNKNOWN') {
        throw new NetlinkError(operation, 'ETIMEDOUT', { cause: error })
      }
      throw wrapped
    }
  }
}

function serialize(nl: NetlinkModule, data: Netlink.StreamData): Buffer {
  const stream = new nl.AttrStream()
  stream.emit(data)
  return Buffer.concat(stream.bufs)
}

function u16be(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16BE(n)
  return b
}

function scopeNumber(scope: RouteScope): number {
  return scope === 'universe' ? RT_SCOPE_UNIVERSE : scope === 'link' ? RT_SCOPE_LINK : RT_SCOPE_HOST
}

function scopeName(n: unknown): RouteScope | undefined {
  if (n === RT_SCOPE_UNIVERSE || n === 'UNIVERSE') return 'universe'
  if (n === RT_SCOPE_LINK || n === 'LINK') return 'link'
  if (n === RT_SCOPE_HOST || n === 'HOST') return 'host'
  return undefined
}

function afNumber(family: AddressFamily): number {
  return family === 'inet' ? AF_INET : AF_INET6
}

function afName(n: number | undefined): AddressFamily | undefined {
  return n === AF_INET ? 'inet' : n === AF_INET6 ? 'inet6' : undefined
}

function toLink(m: Netlink.rt.LinkMessage, nl: NetlinkModule): Link {
  const mac =
    m.attrs.address && m.attrs.address.length === 6 ? bytesToMac(m.attrs.address) : undefined
  let kind: string | undefined
  let vxlan: Link['vxlan']
  if (m.attrs.linkinfo) {
    const info = nl.ifla.parseInfo(m.attrs.linkinfo)
    kind = info.kind
    if (kind === 'vxlan' && info.data) {
      const v = nl.ifla.parseVxlan(info.data)
      const local = v.local ?? v.local6
      vxlan = {
        vni: v.id ?? 0,
        local: local ? bytesToIp(local) : undefined,
        lowerIndex: v.link || undefined,
        port: v.port && v.port.length === 2 ? v.port.readUInt16BE(0) : 8472,
        learning: v.learning === 1,
        gbp: v.gbp === true,
      }
    }
  }
  return {
    index: m.data.index ?? 0,
    name: m.attrs.ifname ?? '',
    mtu: m.attrs.mtu ?? 0,
    mac,
    up: m.data.flags?.up === true,
    kind,
    ...(vxlan ? { vxlan } : {}),
  }
}

function toNeighbour(m: Netlink.rt.NeighborMessage): Neighbour | undefined {
  const family = afName(m.data.family)
  if (!family || !m.attrs.dst || m.data.ifindex === undefined) return undefined
  return {
    linkIndex: m.data.ifindex,
    family,
    ip: bytesToIp(m.attrs.dst),
    mac: m.attrs.lladdr && m.attrs.lladdr.length === 6 ? bytesToMac(m.attrs.lladdr) : undefined,
    permanent: m.data.state?.permanent === true,
  }
}

function toFdbEntry(m: Netlink.rt.NeighborMessage): FdbEntry | undefined {
  if (m.data.family !== AF_BRIDGE || !m.attrs.lladdr || m.data.ifindex === undefined)
    return undefined
  return {
    linkIndex: m.data.ifindex,
    mac: bytesToMac(m.attrs.lladdr),
    dst: m.attrs.dst ? bytesToIp(m.attrs.dst) : undefined,
    self: m.data.flags?.self === true,
    permanent: m.data.state?.permanent === true,
  }
}

function toRoute(m: Netlink.rt.RouteMessage): Route | undefined {
  const family = afName(m.data.family)
  if (!family) return undefined
  const type = typeName(m.data.type)
  if (type === undefined) return undefined
  const dstLen = m.data.dstLen ?? 0
  const zero = family === 'inet' ? '0.0.0.0' : '::'
  const dst = m.attrs.dst ? bytesToIp(m.attrs.dst) : zero
  const flags = m.data.flags as { __unknown?: number } | undefined
  const protocol =
    typeof m.data.protocol === 'number' ? m.data.protocol : protocolNumber(m.data.protocol)
  return {
    family,
    ...(type === 'blackhole' ? { type } : {}),
    dst: `${dst}/${dstLen}`,
    gateway: m.attrs.gateway ? bytesToIp(m.attrs.gateway) : undefined,
    linkIndex: m.attrs.oif,
    onlink: ((flags?.__unknown ?? 0) & RTNH_F_ONLINK) !== 0 ? true : undefined,
    protocol,
    table: m.attrs.table ?? m.data.table ?? MAIN_TABLE,
    priority: m.attrs.priority,
    src: m.attrs.prefsrc ? bytesToIp(m.attrs.prefsrc) : undefined,
    scope: scopeName(m.data.scope),
  }
}

function typeNumber(type: RouteType): number {
  return type === 'blackhole' ? RTN_BLACKHOLE : RTN_UNICAST
}

/** The route types this package handles; others (local, broadcast, ...) are skipped. */
function typeName(t: unknown): RouteType | undefined {
  if (t === undefined || t === RTN_UNICAST || t === 'UNICAST') return 'unicast'
  if (t === RTN_BLACKHOLE || t === 'BLACKHOLE') return 'blackhole'
  return undefined
}

const PROTOCOL_NUMBERS: Record<string, number> = { REDIRECT: 1, KERNEL: 2, BOOT: 3, STATIC: 4 }

function protocolNumber(p: string | undefined): number | undefined {
  return p === undefined ? undefined : PROTOCOL_NUMBERS[p]
}

function toNotification(
  nl: NetlinkModule,
  type: number,
  data: Buffer,
): HostNetworkNotification | undefined {
  switch (type) {
    case RTM_NEWLINK:
    case RTM_DELLINK: {
      const m = nl.rt.parseMessage(type, data) as Netlink.rt.LinkMessage
      return { kind: 'link', action: type === RTM_NEWLINK ? 'new' : 'del', link: toLink(m, nl) }
    }
    case RTM_NEWROUTE:
    case RTM_DELROUTE: {
      const route = toRoute(nl.rt.parseMessage(type, data) as Netlink.rt.RouteMessage)
      return route && route.type === undefined
        ? { kind: 'route', action: type === RTM_NEWROUTE ? 'new' : 'del', route }
        : undefined
    }
    case RTM_NEWNEIGH:
    case RTM_DELNEIGH: {
      const m = nl.rt.parseMessage(type, data) as Netlink.rt.NeighborMessage
      const action = type === RTM_NEWNEIGH ? 'new' : 'del'
      if (m.data.family === AF_BRIDGE) {
        const entry = toFdbEntry(m)
        return entry ? { kind: 'fdb', action, entry } : undefined
      }
      const neighbour = toNeighbour(m)
      return neighbour ? { kind: 'neighbour', action, neighbour } : undefined
    }
    default:
      return undefined
  }
}
