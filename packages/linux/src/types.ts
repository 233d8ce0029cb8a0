import type { Observable } from 'rxjs'

/** Address family of an address, neighbour or route. */
export type AddressFamily = 'inet' | 'inet6'

/**
 * The `rtm_protocol` value that marks routes installed by the @flannel
 * packages, so that they can be found again and cleaned up after a restart.
 * 70 (`'F'`) is not reserved in iproute2's `rt_protos`; `ip route` shows it as
 * `proto 70`.
 */
export const FLANNEL_ROUTE_PROTOCOL = 70

/** `rtm_protocol` of routes added by an administrator or a tool (`proto boot`), the kernel default. */
export const RTPROT_BOOT = 3

/** The kernel's main routing table. */
export const MAIN_TABLE = 254

/** VXLAN attributes of a link of kind `vxlan`. */
export interface VxlanInfo {
  /** VXLAN network identifier. */
  readonly vni: number
  /** Local (source) underlay address, when set. */
  readonly local?: string | undefined
  /** Index of the lower (underlay) device, when set. */
  readonly lowerIndex?: number | undefined
  /** UDP destination port; the kernel default is 8472. */
  readonly port: number
  /** Whether the kernel learns remote MACs (`learning`). */
  readonly learning: boolean
  /** Group Based Policy extension enabled. */
  readonly gbp: boolean
}

/** A network device as the kernel reports it. */
export interface Link {
  /** Interface index. */
  readonly index: number
  /** Interface name. */
  readonly name: string
  /** MTU in bytes. */
  readonly mtu: number
  /** Hardware address, lower-case `aa:bb:cc:dd:ee:ff`, when the device has one. */
  readonly mac?: string | undefined
  /** Administratively up (`IFF_UP`). */
  readonly up: boolean
  /** `IFLA_INFO_KIND` (`vxlan`, `bridge`, `veth`, ...), when the device has one. */
  readonly kind?: string | undefined
  /** VXLAN attributes, for links of kind `vxlan`. */
  readonly vxlan?: VxlanInfo | undefined
}

/** What is needed to create a VXLAN link (`ip link add <name> type vxlan ...`). */
export interface VxlanLinkSpec {
  /** Device name, at most 15 characters, e.g. `flannel.1`. */
  readonly name: string
  /** VXLAN network identifier (0..16777215). Always sent: the kernel would silently use 0. */
  readonly vni: number
  /** Local underlay address (IPv4 or IPv6). */
  readonly local?: string | undefined
  /** Index of the lower (underlay) device (`dev`). */
  readonly lowerIndex?: number | undefined
  /** UDP destination port; undefined or 0 leaves the kernel default 8472. */
  readonly port?: number | undefined
  /** Kernel MAC learning; default false (`nolearning`). */
  readonly learning?: boolean | undefined
  /** Group Based Policy extension; default false. */
  readonly gbp?: boolean | undefined
  /** MTU; default: the kernel's choice. */
  readonly mtu?: number | undefined
  /** Hardware address; default: random, chosen by the kernel. */
  readonly mac?: string | undefined
}

/** An address assigned to a link. */
export interface LinkAddress {
  /** Index of the link holding the address. */
  readonly linkIndex: number
  /** Address family. */
  readonly family: AddressFamily
  /** The address, e.g. `10.244.1.0` or `fd00::1`. */
  readonly address: string
  /** Prefix length, e.g. 32. */
  readonly prefixLength: number
}

/** An IP neighbour (ARP/NDP) entry. */
export interface Neighbour {
  /** Index of the link the entry belongs to. */
  readonly linkIndex: number
  /** Address family. */
  readonly family: AddressFamily
  /** The neighbour's IP address. */
  readonly ip: string
  /** The neighbour's hardware address, when known. */
  readonly mac?: string | undefined
  /** `nud permanent`. Entries written through {@link HostNetwork} are always permanent. */
  readonly permanent: boolean
}

/** A permanent neighbour entry to write (`ip neigh replace <ip> lladdr <mac> dev <link> nud permanent`). */
export interface NeighbourSpec {
  /** Index of the link the entry belongs to. */
  readonly linkIndex: number
  /** The neighbour's IP address (IPv4 or IPv6; the family follows from it). */
  readonly ip: string
  /** The neighbour's hardware address. */
  readonly mac: string
}

/** What identifies a neighbour entry (for deletion). */
export interface NeighbourKey {
  /** Index of the link the entry belongs to. */
  readonly linkIndex: number
  /** The neighbour's IP address (IPv4 or IPv6). */
  readonly ip: string
}

/** A bridge forwarding-database entry (`bridge fdb`), e.g. on a VXLAN device. */
export interface FdbEntry {
  /** Index of the link the entry belongs to. */
  readonly linkIndex: number
  /** Hardware address, lower-case. */
  readonly mac: string
  /** Remote underlay address (`dst`), for VXLAN entries. */
  readonly dst?: string | undefined
  /** `self` entry (kept by the device itself, not the bridge master). */
  readonly self: boolean
  /** `permanent` entry. */
  readonly permanent: boolean
}

/** What identifies an FDB entry (for deletion). `dst` selects one of several entries of a MAC. */
export interface FdbKey {
  /** Index of the link the entry belongs to. */
  readonly linkIndex: number
  /** Hardware address. */
  readonly mac: string
  /** Remote underlay address, for VXLAN entries. */
  readonly dst?: string | undefined
}

/**
 * Route type (`rtm_type`): `unicast` forwards, `blackhole` silently drops
 * (`ip route add blackhole <dst>`).
 */
export type RouteType = 'unicast' | 'blackhole'

/** A route in a routing table. */
export interface Route {
  /** Address family. */
  readonly family: AddressFamily
  /** Route type; absent means `unicast`. A blackhole route has no gateway and no device. */
  readonly type?: RouteType | undefined
  /** Destination network in CIDR form, e.g. `10.244.2.0/24` (`0.0.0.0/0`, `::/0` for default). */
  readonly dst: string
  /** Next hop (`via`). */
  readonly gateway?: string | undefined
  /** Output device index (`dev`). */
  readonly linkIndex?: number | undefined
  /** Next hop is on-link even if no address covers it (`onlink`). */
  readonly onlink?: boolean | undefined
  /** `rtm_protocol`; default {@link RTPROT_BOOT} when writing. */
  readonly protocol?: number | undefined
  /** Routing table; default {@link MAIN_TABLE}. */
  readonly table?: number | undefined
  /** Route priority (`metric`). */
  readonly priority?: number | undefined
  /** Preferred source address (`src`). */
  readonly src?: string | undefined
  /**
   * Route scope; default when writing, as iproute2: `universe` with a gateway,
   * `link` without (flannel's udp backend writes `universe` for its device route).
   */
  readonly scope?: RouteScope | undefined
}

/** Route scope (`rtm_scope`). */
export type RouteScope = 'universe' | 'link' | 'host'

/** What identifies a route (for deletion). */
export interface RouteKey {
  /** Address family. */
  readonly family: AddressFamily
  /** Destination network in CIDR form. */
  readonly dst: string
  /** Routing table; default {@link MAIN_TABLE}. */
  readonly table?: number | undefined
  /** When set, only a route with this `rtm_protocol` is deleted. */
  readonly protocol?: number | undefined
  /** When set, only a route of this type is deleted (as the kernel: any type when unset). */
  readonly type?: RouteType | undefined
  /** When set, only a route with this next hop is deleted. */
  readonly gateway?: string | undefined
  /** When set, only a route through this device is deleted. */
  readonly linkIndex?: number | undefined
  /** When set, only a route with this priority is deleted. */
  readonly priority?: number | undefined
}

/** Filters for {@link HostNetwork.listAddresses} and {@link HostNetwork.listNeighbours}. */
export interface LinkFilter {
  /** Only entries of this link. */
  readonly linkIndex?: number | undefined
  /** Only entries of this family. */
  readonly family?: AddressFamily | undefined
}

/** Filters for {@link HostNetwork.listRoutes}. */
export interface RouteFilter {
  /** Only routes of this family; default both. */
  readonly family?: AddressFamily | undefined
  /** Only routes of this table; default {@link MAIN_TABLE}. */
  readonly table?: number | undefined
  /** Only routes with this `rtm_protocol`. */
  readonly protocol?: number | undefined
  /** Only routes of this type; default `unicast`. */
  readonly type?: RouteType | undefined
  /** Only routes through this device. */
  readonly linkIndex?: number | undefined
}

/** Kinds of kernel notifications one can subscribe to. */
export type NotificationKind = 'link' | 'route' | 'neighbour' | 'fdb'

/**
 * A kernel notification. `action` is `new` for additions and changes, `del`
 * for removals. `overflow` means notifications were lost (the socket buffer
 * overflowed): the subscriber should re-read the state it cares about.
 * Route notifications carry unicast routes only.
 */
export type HostNetworkNotification =
  | { readonly kind: 'link'; readonly action: 'new' | 'del'; readonly link: Link }
  | { readonly kind: 'route'; readonly action: 'new' | 'del'; readonly route: Route }
  | { readonly kind: 'neighbour'; readonly action: 'new' | 'del'; readonly neighbour: Neighbour }
  | { readonly kind: 'fdb'; readonly action: 'new' | 'del'; readonly entry: FdbEntry }
  | { readonly kind: 'overflow' }

/**
 * The host's network state: links, addresses, neighbours, FDB entries and
 * routes of one network namespace (the one of the calling process), with
 * kernel semantics. Implemented over rtnetlink by `NetlinkHostNetwork` and in
 * memory by `MemoryHostNetwork`.
 *
 * Failures reject with a `NetlinkError` carrying the errno name (`EEXIST`,
 * `ENOENT`, `ESRCH`, `ENODEV`, `EADDRNOTAVAIL`, `ENETUNREACH`, ...), exactly
 * as the kernel reports them.
 */
export interface HostNetwork {
  /** All links. */
  listLinks(): Promise<Link[]>
  /** The link with this name or index, or undefined. */
  getLink(nameOrIndex: string | number): Promise<Link | undefined>
  /** Creates a VXLAN link (CREATE|EXCL: `EEXIST` when the name, or the VNI+port, is taken). */
  createVxlanLink(spec: VxlanLinkSpec): Promise<Link>
  /** Sets a link's MTU. */
  setLinkMtu(index: number, mtu: number): Promise<void>
  /** Sets a link administratively up or down. */
  setLinkUp(index: number, up: boolean): Promise<void>
  /** Deletes a link (`ENODEV` when absent). */
  deleteLink(index: number): Promise<void>

  /** Addresses, optionally filtered. */
  listAddresses(filter?: LinkFilter): Promise<LinkAddress[]>
  /** Adds an address (`EEXIST` when present). */
  addAddress(address: LinkAddress): Promise<void>
  /** Deletes an address (`EADDRNOTAVAIL` when absent). */
  deleteAddress(address: LinkAddress): Promise<void>

  /** IP neighbours, optionally filtered. */
  listNeighbours(filter?: LinkFilter): Promise<Neighbour[]>
  /** Adds or replaces a permanent neighbour (`ip neigh replace ... nud permanent`). */
  replaceNeighbour(neighbour: NeighbourSpec): Promise<void>
  /** Deletes a neighbour (`ENOENT` when absent). */
  deleteNeighbour(key: NeighbourKey): Promise<void>

  /** Bridge FDB entries, optionally of one link. */
  listFdb(filter?: { readonly linkIndex?: number | undefined }): Promise<FdbEntry[]>
  /** Appends a permanent self entry (`bridge fdb append <mac> dev <link> dst <dst> self permanent`). */
  appendFdb(entry: FdbKey): Promise<void>
  /** Adds or replaces the permanent self entry of a MAC (`bridge fdb replace ...`). */
  replaceFdb(entry: FdbKey): Promise<void>
  /** Deletes an FDB entry (`ENOENT` when absent). */
  deleteFdb(key: FdbKey): Promise<void>

  /** Routes of a table (default main), optionally filtered. */
  listRoutes(filter?: RouteFilter): Promise<Route[]>
  /** Adds a route (CREATE|EXCL: `EEXIST` when one with the same key exists). */
  addRoute(route: Route): Promise<void>
  /** Adds or replaces a route (`ip route replace`). */
  replaceRoute(route: Route): Promise<void>
  /** Deletes a route (`ESRCH` when no route matches). */
  deleteRoute(key: RouteKey): Promise<void>

  /**
   * Kernel notifications of the given kinds (default all). Cold: each
   * subscription opens its own socket, which is closed on unsubscribe.
   */
  notifications(kinds?: readonly NotificationKind[]): Observable<HostNetworkNotification>

  /** Releases the request socket. Further calls reopen it. */
  close(): Promise<void>
}
