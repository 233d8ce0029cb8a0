import type { Lease } from '@flannel/core'
import { type AddressFamily } from '@flannel/linux'
import { normalizeCidr, normalizeIp, normalizeMac } from '@flannel/linux/backend'

/** A peer's side of one family, as read from its lease. */
export interface PeerPlane {
  readonly family: AddressFamily
  /** Peer subnet in CIDR form, e.g. `10.5.34.0/24`. */
  readonly dst: string
  /** Peer subnet address = its VTEP address, e.g. `10.5.34.0`. */
  readonly gw: string
  /** Peer VTEP MAC (`VtepMAC`). */
  readonly mac: string
  /** Peer underlay address (`PublicIP` / `PublicIPv6`). */
  readonly pub: string
}

/** The result of reading a peer lease for one family. */
export type PeerPlaneResult =
  | { readonly ok: true; readonly plane: PeerPlane }
  | { readonly ok: false; readonly reason: string }
  | undefined

/**
 * Reads one family of a peer's vxlan lease. Undefined when the lease has
 * nothing for that family; `ok: false` when its backend data cannot be decoded.
 */
export function peerPlane(lease: Lease, family: AddressFamily): PeerPlaneResult {
  const v4 = family === 'inet'
  const subnet = v4 ? lease.subnet : lease.ipv6Subnet
  const pub = v4 ? lease.attrs.publicIP : lease.attrs.publicIPv6
  const data = v4 ? lease.attrs.backendData : lease.attrs.backendV6Data
  if (!subnet || subnet.isEmpty || !pub || pub === '0.0.0.0') return undefined
  const mac = (data as { VtepMAC?: unknown } | null | undefined)?.VtepMAC
  if (typeof data !== 'object' || data === null || typeof mac !== 'string') {
    return {
      ok: false,
      reason: `error decoding subnet lease JSON: no VtepMAC in ${JSON.stringify(data ?? null)}`,
    }
  }
  try {
    return {
      ok: true,
      plane: {
        family,
        dst: normalizeCidr(subnet.toString()),
        gw: normalizeIp(subnet.address),
        mac: normalizeMac(mac),
        pub: normalizeIp(pub),
      },
    }
  } catch (error) {
    return { ok: false, reason: `error decoding subnet lease JSON: ${(error as Error).message}` }
  }
}
