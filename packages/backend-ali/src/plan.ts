import { Ip4Net } from '@flannel/core'

/** A route entry as DescribeRouteTables returns it (the fields the backend reads). */
export interface RouteEntry {
  readonly RouteTableId?: string
  readonly DestinationCidrBlock?: string
  readonly Type?: string
  readonly NextHopType?: string
  readonly NextHopId?: string
  readonly InstanceId?: string
  readonly Status?: string
}

/** What to do to a route table so it routes this host's subnet to this instance. */
export interface RoutePlan {
  /** Entries of this instance for other destinations: stale, to delete. */
  readonly remove: readonly RouteEntry[]
  /** True when the right entry is already there (no create needed). */
  readonly exists: boolean
  /** Custom entries in the table now. */
  readonly customCount: number
}

/**
 * flanneld's reconcile rule (spec: backends.md 7.3 step 6), as a pure
 * function: entries of other tables, non-Custom entries and entries of other
 * instances are foreign and kept; this instance's entry for the lease subnet
 * is kept (it "exists"); its `0.0.0.0/0` entry is kept (used for DNAT); every
 * other entry of this instance is stale.
 *
 * Unlike flanneld, the right entry counts as existing in any status (it is
 * then waited for), instead of being deleted and created again while
 * `Pending`.
 */
export function planRoutes(
  entries: readonly RouteEntry[],
  target: { routeTableId: string; instanceId: string; subnet: Ip4Net },
): RoutePlan {
  const remove: RouteEntry[] = []
  let exists = false
  let customCount = 0
  for (const entry of entries) {
    if (entry.Type === 'Custom') customCount++
    if (entry.RouteTableId !== undefined && entry.RouteTableId !== target.routeTableId) continue
    if (entry.Type !== 'Custom' || entry.InstanceId !== target.instanceId) continue
    const dest = parseCidr(entry.DestinationCidrBlock)
    if (dest?.equals(target.subnet)) exists = true
    else if (dest?.toString() === '0.0.0.0/0') continue
    else remove.push(entry)
  }
  return { remove, exists, customCount }
}

function parseCidr(text: string | undefined): Ip4Net | undefined {
  if (text === undefined) return undefined
  try {
    const net = Ip4Net.parse(text.includes('/') ? text : `${text}/32`)
    return net
  } catch {
    return undefined
  }
}
