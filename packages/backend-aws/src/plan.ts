import { Ip4Net } from '@flannel/core'

/** The part of an EC2 route the plan looks at. */
export interface Ec2Route {
  readonly DestinationCidrBlock?: string | undefined
  readonly NetworkInterfaceId?: string | undefined
  readonly InstanceId?: string | undefined
  readonly GatewayId?: string | undefined
  readonly NatGatewayId?: string | undefined
  readonly TransitGatewayId?: string | undefined
  readonly VpcPeeringConnectionId?: string | undefined
  readonly State?: string | undefined
  readonly Origin?: string | undefined
}

/** What to do about this host's own route in one table. */
export type OwnRouteAction =
  | { readonly kind: 'keep' }
  | { readonly kind: 'create' }
  | { readonly kind: 'replace'; readonly previous: Ec2Route }

/**
 * The own route `subnet -> eni` is right when it exists, is active and targets
 * the ENI; it is then kept as is (never deleted and recreated). A route for
 * the subnet with another target, or a blackhole, is replaced in place.
 */
export function planOwnRoute(
  routes: readonly Ec2Route[],
  subnet: Ip4Net,
  eni: string,
): OwnRouteAction {
  const existing = routes.find(
    (r) => r.DestinationCidrBlock !== undefined && sameNet(r.DestinationCidrBlock, subnet),
  )
  if (existing === undefined) return { kind: 'create' }
  if (existing.NetworkInterfaceId === eni && existing.State !== 'blackhole') return { kind: 'keep' }
  return { kind: 'replace', previous: existing }
}

/** Destinations of blackhole routes inside `network` (flanneld's clean-up). */
export function blackholesInside(routes: readonly Ec2Route[], network: Ip4Net): string[] {
  return routes
    .filter(
      (r) =>
        r.State === 'blackhole' &&
        r.DestinationCidrBlock !== undefined &&
        inside(r.DestinationCidrBlock, network),
    )
    .map((r) => r.DestinationCidrBlock as string)
}

/**
 * Routes a flannel host may have made that no live lease owns: inside
 * `network`, made by CreateRoute, targeting an instance or a network
 * interface, for a destination that is not a live lease's subnet. With
 * `only`, just those destinations are considered (incremental collection).
 */
export function staleRoutes(
  routes: readonly Ec2Route[],
  network: Ip4Net,
  live: ReadonlySet<string>,
  only?: ReadonlySet<string>,
): Ec2Route[] {
  return routes.filter((r) => {
    const dest = r.DestinationCidrBlock
    if (dest === undefined || !inside(dest, network)) return false
    if (r.Origin !== undefined && r.Origin !== 'CreateRoute') return false
    if (r.NetworkInterfaceId === undefined && r.InstanceId === undefined) return false
    const key = normalise(dest)
    if (key === undefined || live.has(key)) return false
    return only === undefined || only.has(key)
  })
}

/** Where a route points, in the shape CreateRoute/ReplaceRoute take; undefined when it cannot be restored. */
export function targetOf(route: Ec2Route): Record<string, string> | undefined {
  for (const key of [
    'NetworkInterfaceId',
    'InstanceId',
    'GatewayId',
    'NatGatewayId',
    'TransitGatewayId',
    'VpcPeeringConnectionId',
  ] as const) {
    const value = route[key]
    if (value !== undefined && value !== 'local') return { [key]: value }
  }
  return undefined
}

/** `a.b.c.d/len` with host bits masked, or undefined when not an IPv4 CIDR. */
export function normalise(cidr: string): string | undefined {
  try {
    return Ip4Net.parse(cidr).toString()
  } catch {
    return undefined
  }
}

/** True for a network that lies wholly inside `network` (never the network's supernets). */
export function inside(cidr: string, network: Ip4Net): boolean {
  let net: Ip4Net
  try {
    net = Ip4Net.parse(cidr)
  } catch {
    return false
  }
  return net.prefixLength >= network.prefixLength && network.contains(net.ip)
}

function sameNet(cidr: string, subnet: Ip4Net): boolean {
  return normalise(cidr) === subnet.toString()
}
