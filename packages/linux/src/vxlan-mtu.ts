/**
 * Bytes a VXLAN device adds to each frame it sends: the outer IPv4 header
 * (20), UDP (8), VXLAN (8) and the inner Ethernet header (14).
 */
export const VXLAN_IPV4_HEADROOM = 50

/** The same over an IPv6 underlay, whose header is 40 bytes. */
export const VXLAN_IPV6_HEADROOM = 70

/**
 * The largest MTU the kernel lets a VXLAN device have on a lower device of
 * MTU `lowerMtu`: that MTU less the VXLAN headroom, 50 bytes when the
 * device's `local` address is IPv4 (or unset), 70 when it is IPv6, and never
 * below 68. The kernel lowers a larger MTU to this at creation and refuses it
 * afterwards with `EINVAL`.
 */
export function vxlanMaxMtu(lowerMtu: number, local: string | undefined): number {
  const headroom =
    local !== undefined && local.includes(':') ? VXLAN_IPV6_HEADROOM : VXLAN_IPV4_HEADROOM
  return Math.max(68, lowerMtu - headroom)
}
