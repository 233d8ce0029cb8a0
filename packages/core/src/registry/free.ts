// Finding the lowest free subnets of a range in time linear in the number of
// leases. IPv4 and IPv6 share one implementation over bigint addresses.

/** A network as the search sees it: an address (host bits allowed) and a prefix length. */
export interface RawNet {
  readonly ip: bigint
  readonly prefixLength: number
}

/** The range to search: subnets of `prefixLength` from `min` to `max`, in an address space of `width` bits. */
export interface SearchRange {
  readonly width: 32 | 128
  readonly prefixLength: number
  readonly min: bigint
  readonly max: bigint
}

function maskOf(width: number, prefixLength: number): bigint {
  const all = (1n << BigInt(width)) - 1n
  return prefixLength === 0 ? 0n : (all << BigInt(width - prefixLength)) & all
}

/**
 * Taken networks grouped by prefix length. Each group holds the lease
 * addresses masked at the shorter of the lease's and the candidates' prefix,
 * so one lookup per group answers flannel's `overlaps` (spec: core.md 1.3).
 */
function groupTaken(range: SearchRange, taken: Iterable<RawNet>): Map<number, Set<bigint>> {
  const groups = new Map<number, Set<bigint>>()
  for (const net of taken) {
    const shorter = Math.min(net.prefixLength, range.prefixLength)
    let set = groups.get(net.prefixLength)
    if (set === undefined) groups.set(net.prefixLength, (set = new Set()))
    set.add(net.ip & maskOf(range.width, shorter))
  }
  return groups
}

/**
 * Where the next candidate after a blocked `candidate` may start: past the
 * whole block of any covering (shorter-prefix) lease, else the next subnet.
 * Returns undefined when `candidate` is free.
 */
function blockedUntil(
  range: SearchRange,
  groups: Map<number, Set<bigint>>,
  candidate: bigint,
): bigint | undefined {
  let until: bigint | undefined
  for (const [prefixLength, set] of groups) {
    const shorter = Math.min(prefixLength, range.prefixLength)
    const base = candidate & maskOf(range.width, shorter)
    if (!set.has(base)) continue
    const end = base + (1n << BigInt(range.width - shorter))
    if (until === undefined || end > until) until = end
  }
  return until
}

/**
 * The lowest `limit` subnets of `range` that overlap none of `taken` (leases
 * of any prefix, inside the range or not), lowest first.
 */
export function lowestFree(range: SearchRange, taken: Iterable<RawNet>, limit: number): bigint[] {
  const groups = groupTaken(range, taken)
  const step = 1n << BigInt(range.width - range.prefixLength)
  const out: bigint[] = []
  let candidate = range.min
  while (candidate <= range.max && out.length < limit) {
    const until = blockedUntil(range, groups, candidate)
    if (until === undefined) {
      out.push(candidate)
      candidate += step
    } else {
      candidate = until > candidate + step ? until : candidate + step
    }
  }
  return out
}
