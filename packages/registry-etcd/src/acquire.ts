import {
  LeaseConflictError,
  type Lease,
  type LeaseAttrs,
  type Logger,
  type NetworkConfig,
  type PreviousSubnets,
} from '@flannel/core'
import { chooseSubnet, encodeLeaseAttrs, leaseKey, subnetKey, sleep } from '@flannel/core/registry'
import { backoffDelay } from './retry.js'
import type { EtcdStore } from './store.js'

/** Attempts after lost create races (flanneld gives up after 10 and exits; we keep trying longer). */
export const RACE_ATTEMPTS = 50

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

/**
 * flanneld's lease acquisition on etcd (spec: core.md section 5), with
 * core's `chooseSubnet` deciding and etcd carrying it out: reuse = re-put on
 * a fresh etcd lease; create = transaction guarded by `version == 0`, after
 * deleting our own incompatible lease. A lost create race lists again and
 * picks anew (flanneld would exit).
 */
export async function acquireEtcdLease(input: AcquireInput): Promise<Lease> {
  const { store, config, attrs, random, logger, signal } = input
  const value = encodeLeaseAttrs(attrs)
  for (let attempt = 0; attempt < RACE_ATTEMPTS; attempt++) {
    const listing = await store.list(signal, { expirations: false })
    const decision = chooseSubnet(
      config,
      listing.leases.map((l) => l.lease),
      attrs,
      input.previous,
      random,
    )
    if (decision.kind === 'reuse') {
      const { subnet, ipv6Subnet } = decision.lease
      const expiration = await store.update(leaseKey(decision.lease), value, {
        mustExist: false,
        signal,
      })
      logger.info({ subnet: subnet.toString() }, 'reusing the lease carrying our PublicIP')
      return { subnet, ...(ipv6Subnet ? { ipv6Subnet } : {}), attrs, expiration }
    }
    if (decision.stale !== undefined) {
      logger.info(
        { subnet: decision.stale.subnet.toString() },
        'deleting our lease that no longer fits the network config',
      )
      await store.remove(leaseKey(decision.stale), signal)
    }
    const { subnet, ipv6Subnet } = decision
    const expiration = await store.create(subnetKey(subnet, ipv6Subnet), value, signal)
    if (expiration !== undefined) {
      logger.info(
        { subnet: subnet.toString(), source: decision.source, attempt: attempt + 1 },
        'lease acquired',
      )
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
