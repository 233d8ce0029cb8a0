import { ip4Mask } from '../ip/ip4.js'
import type { Lease } from '../lease/types.js'
import { leasesOverlap } from './own-lease.js'

interface Entry {
  lease: Lease
  readonly seq: number
}

/**
 * The leases that own their subnets (see `withoutOwnLease`), by key, with an
 * index of their IPv4 subnets by prefix length and masked network, so that
 * finding the owner a new lease overlaps costs at most one lookup per prefix
 * length in use instead of a pass over every owner (which made the first
 * batch of N leases quadratic in N). Owners with an IPv6 subnet are also
 * kept in a list, scanned for IPv6 overlaps only.
 */
export class OwnerIndex {
  private readonly byKey = new Map<string, Entry>()
  /** prefix length -> masked IPv4 network -> keys. */
  private readonly v4 = new Map<number, Map<number, Set<string>>>()
  /** Keys of owners with an IPv6 subnet. */
  private readonly v6 = new Set<string>()
  private seq = 0

  has(key: string): boolean {
    return this.byKey.has(key)
  }

  /** Adds an owner, or replaces the lease of one with the same key (same subnets). */
  set(key: string, lease: Lease): void {
    const entry = this.byKey.get(key)
    if (entry) {
      entry.lease = lease
      return
    }
    this.byKey.set(key, { lease, seq: this.seq++ })
    if (!lease.subnet.isEmpty) {
      const len = lease.subnet.prefixLength
      let nets = this.v4.get(len)
      if (!nets) this.v4.set(len, (nets = new Map()))
      const net = (lease.subnet.ip & ip4Mask(len)) >>> 0
      let keys = nets.get(net)
      if (!keys) nets.set(net, (keys = new Set()))
      keys.add(key)
    }
    if (lease.ipv6Subnet !== undefined && !lease.ipv6Subnet.isEmpty) this.v6.add(key)
  }

  delete(key: string): boolean {
    const entry = this.byKey.get(key)
    if (!entry) return false
    this.byKey.delete(key)
    const { subnet } = entry.lease
    if (!subnet.isEmpty) {
      const nets = this.v4.get(subnet.prefixLength)
      const net = (subnet.ip & ip4Mask(subnet.prefixLength)) >>> 0
      const keys = nets?.get(net)
      keys?.delete(key)
      if (keys?.size === 0) nets!.delete(net)
      if (nets?.size === 0) this.v4.delete(subnet.prefixLength)
    }
    this.v6.delete(key)
    return true
  }

  /** The earliest added owner whose subnets overlap `lease`'s, if any. */
  overlapping(lease: Lease): Lease | undefined {
    let best: Entry | undefined
    const consider = (key: string): void => {
      const entry = this.byKey.get(key)
      if (entry && (best === undefined || entry.seq < best.seq)) best = entry
    }
    if (!lease.subnet.isEmpty) {
      const len = lease.subnet.prefixLength
      const base = (lease.subnet.ip & ip4Mask(len)) >>> 0
      for (const [p, nets] of this.v4) {
        if (p <= len) {
          // An owner at a shorter (or the same) prefix overlaps iff it contains the lease.
          const keys = nets.get((lease.subnet.ip & ip4Mask(p)) >>> 0)
          if (keys) for (const key of keys) consider(key)
        } else if (2 ** (p - len) <= nets.size) {
          // Longer prefixes inside the lease: enumerate them when there are fewer than owners.
          const step = 2 ** (32 - p)
          for (let i = 0; i < 2 ** (p - len); i++) {
            const keys = nets.get(base + i * step)
            if (keys) for (const key of keys) consider(key)
          }
        } else {
          for (const [net, keys] of nets) {
            if ((net & ip4Mask(len)) >>> 0 === base) for (const key of keys) consider(key)
          }
        }
      }
    }
    if (lease.ipv6Subnet !== undefined && !lease.ipv6Subnet.isEmpty) {
      for (const key of this.v6) {
        const entry = this.byKey.get(key)!
        if ((best === undefined || entry.seq < best.seq) && leasesOverlap(entry.lease, lease)) {
          best = entry
        }
      }
    }
    return best?.lease
  }
}
