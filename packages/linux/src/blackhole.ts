import { formatCidr, parseCidr } from './address.js'
import { isNetlinkError } from './errors.js'
import { FLANNEL_ROUTE_PROTOCOL, type AddressFamily, type HostNetwork } from './types.js'

/** What {@link syncBlackholeRoutes} changed, and what it could not. */
export interface BlackholeSyncResult {
  /** Subnets that got a blackhole route. */
  readonly added: string[]
  /** Subnets whose flannel-owned blackhole route was removed (no longer ours). */
  readonly removed: string[]
  /** Subnets where adding or removing failed, with the error (e.g. `EEXIST`: another route holds the slot). */
  readonly failed: { readonly subnet: string; readonly error: unknown }[]
}

/**
 * Makes the host's own subnets blackholed (flanneld's `--ip-blackhole-route`):
 * each subnet gets a `blackhole <subnet>` route in the main table unless one
 * is already there, so traffic to an address of the subnet that no pod holds
 * is dropped here instead of following the default route out of the host.
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
  const present = await host.listRoutes({ type: 'blackhole' })
  const result: BlackholeSyncResult = { added: [], removed: [], failed: [] }
  for (const route of present) {
    if (route.protocol !== FLANNEL_ROUTE_PROTOCOL || wanted.has(route.dst)) continue
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
    if (present.some((r) => r.dst === dst)) continue
    try {
      await host.addRoute({ family, type: 'blackhole', dst, protocol: FLANNEL_ROUTE_PROTOCOL })
      result.added.push(dst)
    } catch (error) {
      result.failed.push({ subnet: dst, error })
    }
  }
  return result
}
