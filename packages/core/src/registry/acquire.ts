import type { NetworkConfig } from '../config/types.js'
import { AbortError, LeaseConflictError, throwIfAborted } from '../errors.js'
import type { Ip4Net } from '../ip/ip4.js'
import type { Ip6Net } from '../ip/ip6.js'
import type { Lease, LeaseAttrs, PreviousSubnets } from '../lease/types.js'
import { chooseSubnet } from './allocate.js'

/** How many times {@link acquireFromStore} tries after lost create races by default (flanneld: 10). */
export const DEFAULT_ACQUIRE_ATTEMPTS = 10

/**
 * The few operations a key-value store offers that {@link acquireFromStore}
 * needs. Each is one round trip; none of them decides anything.
 */
export interface LeaseStore {
  /** Every current lease of the network. */
  list(signal?: AbortSignal): Promise<Iterable<Lease>>
  /**
   * Creates the lease for `subnet` (and `ipv6Subnet`) with `attrs` and a fresh
   * TTL, only if no lease exists for that key (etcd: a transaction guarded by
   * `version(key) == 0`). Resolves `undefined` when the key already exists,
   * i.e. another host won the race.
   */
  create(
    subnet: Ip4Net,
    ipv6Subnet: Ip6Net | undefined,
    attrs: LeaseAttrs,
    signal?: AbortSignal,
  ): Promise<Lease | undefined>
  /** Writes `attrs` and a fresh TTL onto the existing `lease` (the one carrying our PublicIP). */
  update(lease: Lease, attrs: LeaseAttrs, signal?: AbortSignal): Promise<Lease>
  /** Deletes `lease`; a lease that is already gone is not an error. */
  remove(lease: Lease, signal?: AbortSignal): Promise<void>
}

/** Inputs of {@link acquireFromStore}. */
export interface AcquireFromStoreOptions {
  /** The validated network config (read it again before each acquisition, as flanneld does). */
  readonly config: NetworkConfig
  /** What the host publishes; `attrs.publicIP` selects a lease to reuse. */
  readonly attrs: LeaseAttrs
  /** The subnets the host held before (subnet.env). */
  readonly previous?: PreviousSubnets | undefined
  /** A number in [0, 1) for the pick among the lowest free subnets (default `Math.random`). */
  readonly random?: (() => number) | undefined
  /** Aborts between and during store calls; the routine then rejects with `AbortError`. */
  readonly signal?: AbortSignal | undefined
  /** Attempts in all, lost races included (default {@link DEFAULT_ACQUIRE_ATTEMPTS}). */
  readonly attempts?: number | undefined
  /** Milliseconds to wait after the n-th lost race (n from 0) before listing again (default 0). */
  readonly retryDelayMs?: ((lostRaces: number) => number) | undefined
  /** Called after each lost create race with the subnet that was taken (for logs and metrics). */
  readonly onConflict?: ((subnet: Ip4Net, lostRaces: number) => void) | undefined
}

/** How an acquisition ended: the lease and which rule of spec core.md section 5 gave it. */
export interface AcquiredLease {
  readonly lease: Lease
  /** `reuse`: the lease carrying our PublicIP; `previous`: our subnet from before; `random`: a new pick. */
  readonly source: 'reuse' | 'previous' | 'random'
}

function wait(ms: number, signal: AbortSignal | undefined): Promise<void> {
  if (ms <= 0) return Promise.resolve()
  return new Promise((resolve, reject) => {
    const onAbort = (): void => {
      clearTimeout(timer)
      reject(new AbortError())
    }
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort)
      resolve()
    }, ms)
    signal?.addEventListener('abort', onAbort, { once: true })
  })
}

/**
 * flanneld's lease acquisition (spec: core.md section 5) on any store that
 * can list, create-if-absent, update and delete: list, let
 * {@link chooseSubnet} decide, then carry the decision out. Reuse updates
 * the lease carrying our PublicIP; otherwise our own incompatible lease (if
 * any) is deleted and the chosen subnet created. A create that finds the key
 * taken (another host was faster) lists again and picks anew, up to
 * `attempts` times (flanneld would exit instead; the spec asks for the retry).
 *
 * @example
 * ```ts
 * const { lease } = await acquireFromStore(myStore, { config, attrs, previous, signal })
 * ```
 * @throws SubnetExhaustedError (`out of subnets`) when nothing is free.
 * @throws LeaseConflictError (`max retries reached trying to acquire a subnet`) after `attempts` lost races.
 * @throws AbortError when `signal` is aborted.
 */
export async function acquireFromStore(
  store: LeaseStore,
  options: AcquireFromStoreOptions,
): Promise<AcquiredLease> {
  const { config, attrs, previous, signal } = options
  const random = options.random ?? Math.random
  const attempts = options.attempts ?? DEFAULT_ACQUIRE_ATTEMPTS
  for (let attempt = 0; attempt < attempts; attempt++) {
    throwIfAborted(signal)
    const leases = await store.list(signal)
    throwIfAborted(signal)
    const decision = chooseSubnet(config, leases, attrs, previous, random)
    if (decision.kind === 'reuse') {
      return { lease: await store.update(decision.lease, attrs, signal), source: 'reuse' }
    }
    if (decision.stale !== undefined) await store.remove(decision.stale, signal)
    throwIfAborted(signal)
    const lease = await store.create(decision.subnet, decision.ipv6Subnet, attrs, signal)
    if (lease !== undefined) return { lease, source: decision.source }
    options.onConflict?.(decision.subnet, attempt)
    await wait(options.retryDelayMs?.(attempt) ?? 0, signal)
  }
  throw new LeaseConflictError('max retries reached trying to acquire a subnet')
}
