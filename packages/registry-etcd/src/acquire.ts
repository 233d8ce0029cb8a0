import {
  LeaseConflictError,
  SubnetExhaustedError,
  encodeLeaseAttrs,
  subnetKey,
  type Ip4Net,
  type Ip6Net,
  type Lease,
  type LeaseAttrs,
  type Logger,
  type NetworkConfig,
  type PreviousSubnets,
} from '@flannel/core'
import { backoffDelay, sleep } from './retry.js'
import type { EtcdStore, StoredLease } from './store.js'

/** How many free subnets the allocator collects before picking one at random (flanneld: 100). */
const CANDIDATES = 100
/** Attempts after lost create races (flanneld gives up after 10; we keep trying longer). */
const RACE_ATTEMPTS = 50

/** Inputs of {@link acquireEtcdLease}. */
export interface AcquireInput {
  readonly store: EtcdStore
  readonly config: NetworkConfig
  readonly attrs: LeaseAttrs
  readonly previous?: PreviousSubnets | undefined
  readonly random: () => number
  readonly logger: Logger
  readonly signal?: AbortSignal | undefined
  /** Called once per lost create race (for metrics and benchmarks). */
  readonly onConflict?: (() => void) | undefined
}

function ip4InRange(config: NetworkConfig, subnet: Ip4Net): boolean {
  const min = config.subnetMin
  const max = config.subnetMax
  if (min === undefined || max === undefined) return false
  return subnet.prefixLength === config.subnetLen && subnet.ip >= min.ip && subnet.ip <= max.ip
}

function ip6InRange(config: NetworkConfig, subnet: Ip6Net | undefined): boolean {
  if (!config.enableIPv6) return subnet === undefined
  const min = config.ipv6SubnetMin
  const max = config.ipv6SubnetMax
  if (subnet === undefined || min === undefined || max === undefined) return false
  return subnet.prefixLength === config.ipv6SubnetLen && subnet.ip >= min.ip && subnet.ip <= max.ip
}

/** flanneld's compatibility test of an existing or previous lease with the config (spec: core.md section 5, step 4). */
export function isCompatible(config: NetworkConfig, subnet: Ip4Net, ipv6Subnet?: Ip6Net): boolean {
  return ip4InRange(config, subnet) && ip6InRange(config, ipv6Subnet)
}

/** The lowest `CANDIDATES` free IPv4 subnets of the range, skipping any that overlaps a lease. */
function freeIp4(config: NetworkConfig, taken: readonly Ip4Net[]): Ip4Net[] {
  const out: Ip4Net[] = []
  let s = config.subnetMin
  const max = config.subnetMax
  if (s === undefined || max === undefined) return out
  for (; s.ip <= max.ip && out.length < CANDIDATES; ) {
    const candidate = s
    if (!taken.some((t) => t.overlaps(candidate))) out.push(candidate)
    const next = s.next()
    if (next.ip <= s.ip) break // wrapped around the address space
    s = next
  }
  return out
}

function freeIp6(config: NetworkConfig, taken: readonly Ip6Net[]): Ip6Net[] {
  const out: Ip6Net[] = []
  let s = config.ipv6SubnetMin
  const max = config.ipv6SubnetMax
  if (s === undefined || max === undefined) return out
  for (; s.ip <= max.ip && out.length < CANDIDATES; ) {
    const candidate = s
    if (!taken.some((t) => t.overlaps(candidate))) out.push(candidate)
    const next = s.next()
    if (next.ip <= s.ip) break
    s = next
  }
  return out
}

function pick<T>(items: readonly T[], random: () => number): T {
  return items[Math.min(items.length - 1, Math.floor(random() * items.length))]!
}

/**
 * flanneld's lease acquisition on etcd (spec: core.md section 5): reuse the
 * lease carrying our PublicIP when compatible (an incompatible one is
 * deleted), else the previous subnet when free and compatible, else a random
 * pick among the lowest 100 free subnets, created with a `version == 0`
 * transaction. A lost create race starts over (flanneld would exit).
 */
export async function acquireEtcdLease(input: AcquireInput): Promise<Lease> {
  const { store, config, attrs, random, logger, signal } = input
  const value = encodeLeaseAttrs(attrs)
  for (let attempt = 0; attempt < RACE_ATTEMPTS; attempt++) {
    let leases: StoredLease[] = (await store.list(signal, { expirations: false })).leases
    const mine = leases.find((l) => l.lease.attrs.publicIP === attrs.publicIP)
    if (mine !== undefined) {
      const { subnet, ipv6Subnet } = mine.lease
      if (isCompatible(config, subnet, ipv6Subnet)) {
        const expiration = await store.update(mine.name, value, { mustExist: false, signal })
        logger.info({ subnet: subnet.toString() }, 'reusing the lease carrying our PublicIP')
        return { subnet, ...(ipv6Subnet ? { ipv6Subnet } : {}), attrs, expiration }
      }
      logger.info({ subnet: subnet.toString() }, 'deleting our incompatible lease')
      await store.remove(mine.name, signal)
      leases = leases.filter((l) => l !== mine)
    }

    let subnet: Ip4Net | undefined
    let ipv6Subnet: Ip6Net | undefined
    const prev = input.previous
    if (prev?.subnet !== undefined) {
      const held = leases.some((l) => l.lease.subnet.equals(prev.subnet))
      const prev6 = config.enableIPv6 ? prev.ipv6Subnet : undefined
      if (!held && isCompatible(config, prev.subnet, prev6)) {
        subnet = prev.subnet
        ipv6Subnet = prev6
      } else {
        logger.info(
          { subnet: prev.subnet.toString() },
          'previous subnet is taken or not compatible with the network config; ignoring it',
        )
      }
    }
    if (subnet === undefined) {
      const free4 = freeIp4(
        config,
        leases.map((l) => l.lease.subnet),
      )
      const free6 = config.enableIPv6
        ? freeIp6(
            config,
            leases.flatMap((l) => (l.lease.ipv6Subnet ? [l.lease.ipv6Subnet] : [])),
          )
        : []
      if (free4.length === 0 || (config.enableIPv6 && free6.length === 0)) {
        throw new SubnetExhaustedError()
      }
      subnet = pick(free4, random)
      ipv6Subnet = config.enableIPv6 ? pick(free6, random) : undefined
    }

    const name = subnetKey(subnet, ipv6Subnet)
    const expiration = await store.create(name, value, signal)
    if (expiration !== undefined) {
      logger.info({ subnet: subnet.toString(), attempt: attempt + 1 }, 'lease acquired')
      return { subnet, ...(ipv6Subnet ? { ipv6Subnet } : {}), attrs, expiration }
    }
    input.onConflict?.()
    logger.debug(
      { subnet: subnet.toString(), attempt: attempt + 1 },
      'subnet taken meanwhile; picking again',
    )
    await sleep(backoffDelay(Math.min(attempt, 4), random, 10, 200), signal)
  }
  throw new LeaseConflictError('max retries reached trying to acquire a subnet')
}
