import { Ip4Net } from '@flannel/core'

/** The priority flanneld gives its routes. */
export const ROUTE_PRIORITY = 1000

/** flanneld's route name: `10.20.5.0/24` -> `flannel-10-20-5-0-24`. */
export function routeName(subnet: Ip4Net): string {
  return `flannel-${subnet.toString().replace(/[./]/g, '-')}`
}

/** A resource link without its scheme and API prefix: `projects/p/zones/z/instances/i`. */
export function resourcePath(link: string | undefined | null): string | undefined {
  if (link === undefined || link === null || link === '') return undefined
  const i = link.indexOf('projects/')
  return i < 0 ? link : link.slice(i)
}

/** The part of a Compute route the plan looks at. */
export interface GceRouteView {
  readonly name?: string | null | undefined
  readonly network?: string | null | undefined
  readonly destRange?: string | null | undefined
  readonly nextHopInstance?: string | null | undefined
}

/**
 * Routes flannel made that no live lease owns: named exactly as flannel names
 * the route of their destination, in `networkLink`, with an instance next
 * hop, for a destination inside `network` that is not in `live`. With `only`,
 * just those destinations are considered.
 */
export function staleRoutes<R extends GceRouteView>(
  routes: readonly R[],
  network: Ip4Net,
  networkLink: string,
  live: ReadonlySet<string>,
  only?: ReadonlySet<string>,
): R[] {
  const ours = resourcePath(networkLink)
  return routes.filter((r) => {
    if (r.destRange == null || r.name == null || !r.name.startsWith('flannel-')) return false
    let dest: Ip4Net
    try {
      dest = Ip4Net.parse(r.destRange)
    } catch {
      return false
    }
    if (r.name !== routeName(dest)) return false
    if (resourcePath(r.network) !== ours || r.nextHopInstance == null) return false
    if (dest.prefixLength < network.prefixLength || !network.contains(dest.ip)) return false
    const key = dest.toString()
    return !live.has(key) && (only === undefined || only.has(key))
  })
}
