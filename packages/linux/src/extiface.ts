import {
  FlannelError,
  InvalidArgumentError,
  type ExternalInterface,
  type FlannelErrorOptions,
} from '@flannel/core'
import { familyOf, normalizeIp, parseCidr } from './address.js'
import type { AddressFamily, HostNetwork, Link, LinkAddress, Route } from './types.js'

/** flanneld's message when `--iface`/`--iface-regex` were given and nothing matched. */
export const NO_MATCHING_INTERFACE_MESSAGE =
  'Failed to find interface to use that matches the interfaces and/or regexes provided'

/** No usable external interface was found. `reason` says which rule failed. */
export class ExternalInterfaceError extends FlannelError {
  constructor(message: string, options: FlannelErrorOptions = {}) {
    super('NO_EXTERNAL_INTERFACE', message, options)
  }
}

/** How to choose the external interface: flanneld's flags (spec: core.md 10.1). */
export interface ExternalInterfaceOptions {
  /** `--iface`, in order: interface names or addresses (IPv4 or IPv6). */
  readonly iface?: readonly string[] | undefined
  /** `--iface-regex`, in order: matched against addresses first, then names. */
  readonly ifaceRegex?: readonly string[] | undefined
  /** `--iface-can-reach`: the interface of the main-table route to this address. */
  readonly ifaceCanReach?: string | undefined
  /** `--public-ip`: published instead of the interface's IPv4 address. */
  readonly publicIP?: string | undefined
  /** `--public-ipv6`: published instead of the interface's IPv6 address. */
  readonly publicIPv6?: string | undefined
  /** Look for an IPv4 address (default true). */
  readonly enableIPv4?: boolean | undefined
  /** Look for an IPv6 address (default false). */
  readonly enableIPv6?: boolean | undefined
}

/** What {@link chooseExternalInterface} decides from: the host's links, addresses and main-table routes. */
export interface InterfaceSnapshot {
  readonly links: readonly Link[]
  readonly addresses: readonly LinkAddress[]
  readonly routes: readonly Route[]
}

/**
 * Selects the external interface as flanneld does, reading the host's state
 * through `host` (the calling process's namespace for the netlink one).
 * Rejects with {@link ExternalInterfaceError} when nothing usable is found.
 */
export async function selectExternalInterface(
  host: HostNetwork,
  options: ExternalInterfaceOptions = {},
): Promise<ExternalInterface> {
  const [links, addresses, routes] = await Promise.all([
    host.listLinks(),
    host.listAddresses(),
    host.listRoutes(),
  ])
  return chooseExternalInterface({ links, addresses, routes }, options)
}

/** The pure part of {@link selectExternalInterface}. */
export function chooseExternalInterface(
  snapshot: InterfaceSnapshot,
  options: ExternalInterfaceOptions = {},
): ExternalInterface {
  const v4 = options.enableIPv4 ?? true
  const v6 = options.enableIPv6 ?? false
  if (options.publicIP !== undefined && familyOf(options.publicIP, 'publicIP') !== 'inet') {
    throw new InvalidArgumentError('publicIP', options.publicIP, 'not an IPv4 address')
  }
  if (options.publicIPv6 !== undefined && familyOf(options.publicIPv6, 'publicIPv6') !== 'inet6') {
    throw new InvalidArgumentError('publicIPv6', options.publicIPv6, 'not an IPv6 address')
  }
  const regexes = (options.ifaceRegex ?? []).map((r) => {
    try {
      return new RegExp(r)
    } catch (error) {
      throw new InvalidArgumentError('ifaceRegex', r, 'not a valid regular expression', {
        cause: error,
      })
    }
  })
  const flagsGiven =
    (options.iface?.length ?? 0) > 0 || regexes.length > 0 || options.ifaceCanReach !== undefined
  const usable = (link: Link): ExternalInterface | string =>
    describe(snapshot, link, options, v4, v6)
  const reasons: string[] = []

  const attempt = (link: Link | undefined, what: string): ExternalInterface | undefined => {
    if (!link) {
      reasons.push(`${what}: no such interface`)
      return undefined
    }
    const result = usable(link)
    if (typeof result === 'string') {
      reasons.push(`${what}: ${result}`)
      return undefined
    }
    return result
  }

  if (flagsGiven) {
    for (const spec of options.iface ?? []) {
      const link = isAddress(spec)
        ? linkHolding(snapshot, spec)
        : snapshot.links.find((l) => l.name === spec)
      const found = attempt(link, `iface ${spec}`)
      if (found) return found
    }
    for (const re of regexes) {
      for (const family of families(v4, v6)) {
        for (const link of snapshot.links) {
          if (!ordered(addressesOf(snapshot, link.index, family)).some((a) => re.test(a.address)))
            continue
          const found = attempt(link, `iface-regex ${re.source}`)
          if (found) return found
        }
      }
      for (const link of snapshot.links) {
        if (!re.test(link.name)) continue
        const found = attempt(link, `iface-regex ${re.source}`)
        if (found) return found
      }
    }
    if (options.ifaceCanReach !== undefined) {
      const target = normalizeIp(options.ifaceCanReach, 'ifaceCanReach')
      const route = longestMatch(snapshot.routes, target)
      const link =
        route?.linkIndex === undefined
          ? undefined
          : snapshot.links.find((l) => l.index === route.linkIndex)
      const found = attempt(link, `iface-can-reach ${target}`)
      if (found) return found
    }
    throw new ExternalInterfaceError(
      reasons.length
        ? `${NO_MATCHING_INTERFACE_MESSAGE} (${reasons.join('; ')})`
        : NO_MATCHING_INTERFACE_MESSAGE,
    )
  }

  if (options.publicIP !== undefined && v4) {
    const link = linkHolding(snapshot, options.publicIP)
    if (!link)
      throw new ExternalInterfaceError(`no interface holds the public IP ${options.publicIP}`)
    const found = attempt(link, `public-ip ${options.publicIP}`)
    if (found) return found
    throw new ExternalInterfaceError(reasons.join('; '))
  }

  const v4Default = v4 ? defaultRouteLink(snapshot, 'inet') : undefined
  const v6Default = v6 ? defaultRouteLink(snapshot, 'inet6') : undefined
  if (v4 && v4Default === undefined)
    throw new ExternalInterfaceError('failed to get default interface: no IPv4 default route')
  if (v6 && v6Default === undefined)
    throw new ExternalInterfaceError('failed to get default v6 interface: no IPv6 default route')
  if (v4Default !== undefined && v6Default !== undefined && v4Default !== v6Default) {
    throw new ExternalInterfaceError('the IPv4 and IPv6 default routes use different interfaces')
  }
  const index = v4Default ?? v6Default!
  const found = attempt(
    snapshot.links.find((l) => l.index === index),
    'default route interface',
  )
  if (found) return found
  throw new ExternalInterfaceError(reasons.join('; '))
}

function describe(
  snapshot: InterfaceSnapshot,
  link: Link,
  options: ExternalInterfaceOptions,
  v4: boolean,
  v6: boolean,
): ExternalInterface | string {
  if (!link.mtu) return `failed to determine MTU for ${link.name} interface`
  const ifaceAddr = v4 ? ordered(addressesOf(snapshot, link.index, 'inet'))[0]?.address : undefined
  const ifaceV6Addr = v6
    ? ordered(addressesOf(snapshot, link.index, 'inet6'))[0]?.address
    : undefined
  if (v4 && ifaceAddr === undefined) return `failed to find IPv4 address for interface ${link.name}`
  if (v6 && ifaceV6Addr === undefined)
    return `failed to find IPv6 address for interface ${link.name}`
  const extAddr = v4
    ? options.publicIP === undefined
      ? ifaceAddr
      : normalizeIp(options.publicIP)
    : undefined
  const extV6Addr = v6
    ? options.publicIPv6 === undefined
      ? ifaceV6Addr
      : normalizeIp(options.publicIPv6)
    : undefined
  return {
    name: link.name,
    index: link.index,
    mtu: link.mtu,
    ...(ifaceAddr !== undefined ? { ifaceAddr } : {}),
    ...(ifaceV6Addr !== undefined ? { ifaceV6Addr } : {}),
    ...(extAddr !== undefined ? { extAddr } : {}),
    ...(extV6Addr !== undefined ? { extV6Addr } : {}),
  }
}

function families(v4: boolean, v6: boolean): AddressFamily[] {
  return [...(v4 ? (['inet'] as const) : []), ...(v6 ? (['inet6'] as const) : [])]
}

function isAddress(text: string): boolean {
  try {
    familyOf(text)
    return true
  } catch {
    return false
  }
}

function addressesOf(
  snapshot: InterfaceSnapshot,
  index: number,
  family: AddressFamily,
): LinkAddress[] {
  return snapshot.addresses.filter((a) => a.linkIndex === index && a.family === family)
}

function linkHolding(snapshot: InterfaceSnapshot, ip: string): Link | undefined {
  const wanted = normalizeIp(ip)
  const holder = snapshot.addresses.find((a) => a.address === wanted)
  return holder && snapshot.links.find((l) => l.index === holder.linkIndex)
}

/** Usable unicast addresses, global before link-local (kernel order otherwise), as flanneld ranks them. */
function ordered(addresses: readonly LinkAddress[]): LinkAddress[] {
  const rank = (a: LinkAddress): number => (isLinkLocal(a) ? 1 : 0)
  return addresses.filter(isUsableUnicast).sort((a, b) => rank(a) - rank(b))
}

function isLinkLocal(a: LinkAddress): boolean {
  return a.family === 'inet'
    ? a.address.startsWith('169.254.')
    : /^fe[89ab][0-9a-f]?:/i.test(a.address)
}

function isUsableUnicast(a: LinkAddress): boolean {
  if (a.family === 'inet') {
    const first = Number(a.address.split('.')[0])
    return first !== 0 && first !== 127 && first < 224
  }
  return a.address !== '::' && a.address !== '::1' && !/^ff/i.test(a.address)
}

function defaultRouteLink(snapshot: InterfaceSnapshot, family: AddressFamily): number | undefined {
  const zero = family === 'inet' ? '0.0.0.0/0' : '::/0'
  return snapshot.routes.find(
    (r) => r.family === family && r.dst === zero && r.linkIndex !== undefined,
  )?.linkIndex
}

function longestMatch(routes: readonly Route[], ip: string): Route | undefined {
  const family = familyOf(ip)
  let best: Route | undefined
  let bestLen = -1
  for (const r of routes) {
    if (r.family !== family || r.linkIndex === undefined) continue
    const net = parseCidr(r.dst)
    if (net.prefixLength <= bestLen) continue
    if (parseCidr(`${ip}/${net.prefixLength}`).address === net.address) {
      best = r
      bestLen = net.prefixLength
    }
  }
  return best
}
