import { formatCidr, parseCidr } from './address.js'
import { isNetlinkError } from './errors.js'
import { FLANNEL_ROUTE_PROTOCOL, type AddressFamily, type HostNetwork } from './types.js'

/** What {@link syncBlackholeRoutes} changed, and what it could not. */
export interface BlackholeSyncResult {
  /** Subnets that got a blackhole route. */
  readonly added: string[]
  /** Subnets whose flannel-owned blackhole route was removed (no longer ours, or yielded). */
  readonly removed: string[]
  /** Own subnets left without a blackhole because a unicast route (e.g. a bridge's) routes them. */
  readonly yielded: string[]
  /** Subnets where adding or removing failed, with the error. */
  readonly failed: { readonly subnet: string; readonly error: unknown }[]
}

/**
 * Makes the host's own subnets blackholed (flanneld's `--ip-blackhole-route`):
 * each subnet gets a `blackhole <subnet>` route in the main table unless one
 * is already there, so traffic to an address of the subnet that no pod holds
 * is dropped here instead of following the default route out of the host.
 *
 * The route is meant for hosts where no bridge owns the subnet (flanneld's
 * case: Canal). Where a unicast route for the subnet exists (a `cni0` bridge
 * holding `<subnet>.1/24`), a blackhole in the same slot would shadow it and
 * cut the pods off, so the subnet is left alone and a flannel-owned blackhole
 * for it is removed; flanneld instead keeps its blackhole, or fails with
 * `EEXIST` when the bridge came first.
 *
 * Beyond flanneld, the routes carry {@link FLANNEL_ROUTE_PROTOCOL}, and a
 * flannel-owned blackhole route for any other subnet (the lease of an earlier
 * run) is removed. Blackhole routes of other owners are never touched. Every
 * subnet is tried; failures are returned, not thrown.
 *
 * @param subnets - the own subnets in CIDR form (IPv4 and/or IPv6)
 */
export async function syncBlackholeRoutes(
  host: HostNetwork,
  subnets: readonly string[],
): Promise<BlackholeSyncResult> {
  const wanted = new Map<string, AddressFamily>(
    subnets.map((s) => {
      const cidr = parseCidr(s, 'subnet')
      return [formatCidr(cidr), cidr.family]
    }),
  )
  const blackholes = await host.listRoutes({ type: 'blackhole' })
  const routed = new Set(
    (await host.listRoutes()).map((r) => r.dst).filter((dst) => wanted.has(dst)),
  )
  const result: BlackholeSyncResult = { added: [], removed: [], yielded: [...routed], failed: [] }
  for (const route of blackholes) {
    if (route.protocol !== FLANNEL_ROUTE_PROTOCOL) continue
    if (wanted.has(route.dst) && !routed.has(route.dst)) continue
    try {
      await host.deleteRoute({
        family: route.family,
        dst: route.dst,
        type: 'blackhole',
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
      result.removed.push(route.dst)
    } catch (error) {
      if (!isNetlinkError(error, 'ESRCH')) result.failed.push({ subnet: route.dst, error })
    }
  }
  for (const [dst, family] of wanted) {
    if (routed.has(dst) || blackholes.some((r) => r.dst === dst)) continue
    try {
      await host.addRoute({ family, type: 'blackhole', dst, protocol: FLANNEL_ROUTE_PROTOCOL })
      result.added.push(dst)
    } catch (error) {
      result.failed.push({ subnet: dst, error })
    }
  }
  return result
}
