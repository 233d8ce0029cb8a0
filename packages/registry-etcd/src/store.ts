import { LeaseNotFoundError, type Lease, type Logger } from '@flannel/core'
import { decodeLeaseAttrs, parseLeaseKey } from '@flannel/core/registry'
import type { Etcd3, IKeyValue } from 'etcd3'
import type { KeyLayout } from './keys.js'
import { withRetry } from './retry.js'

/** A lease as stored in etcd, with what the watch and renewals need to know about it. */
export interface StoredLease {
  /** The subnet key basename, e.g. `10.5.34.0-24`. */
  readonly name: string
  readonly lease: Lease
  /** The stored value, byte for byte. */
  readonly value: string
  /** etcd lease id (decimal string); `'0'` for a reservation. */
  readonly etcdLease: string
  readonly modRevision: string
}

/** A listing of every lease with the etcd revision it was read at. */
export interface LeaseListing {
  readonly leases: StoredLease[]
  /** Header revision of the read (decimal string). */
  readonly revision: string
  /** Subnet keys under `subnets/` whose key or value did not parse (logged, skipped). */
  readonly unparsable: readonly string[]
}

/** Outcome of turning one etcd key/value into a lease. */
export type Parsed = { ok: true; lease: StoredLease } | { ok: false; reason: string }

/** Settings of {@link EtcdStore}. */
export interface StoreSettings {
  readonly keys: KeyLayout
  readonly requestTimeoutMs: number
  /** Longest single attempt (connecting included) before it is retried. */
  readonly dialTimeoutMs?: number | undefined
  readonly leaseTtlSeconds: number
  readonly random: () => number
  readonly logger: Logger
  readonly now?: () => number
}

const TTL_CACHE_LIMIT = 10_000
const TTL_LOOKUP_CONCURRENCY = 16
const WARNED_LIMIT = 10_000

/** A bad entry already warned about: its value then, and the revision it was written at. */
interface Warned {
  readonly value: string
  readonly modRevision: bigint
}

/**
 * The etcd primitives of flanneld's registry (spec: core.md section 4.2):
 * config read, lease listing with TTLs, create guarded by `version == 0`,
 * update with a freshly granted lease, delete. Every call retries transient
 * failures within `requestTimeoutMs` and honours an AbortSignal.
 */
export class EtcdStore {
  /** Known expirations by etcd lease id; an etcd lease's TTL never grows (no keep-alive). */
  private readonly expirations = new Map<string, number>()
  /**
   * Entries skipped with a warning, by full key. One store serves the
   * acquisition's listings and every watch of the registry (the Agent runs
   * two), and each watch re-lists after a lost connection: without this, one
   * bad entry was warned about two or three times. Now it is warned about
   * once per value it takes; it is forgotten when the key is deleted, turns
   * into a good lease, or is missing from a listing.
   */
  private readonly warned = new Map<string, Warned>()
  private readonly now: () => number

  constructor(
    readonly client: Etcd3,
    private readonly settings: StoreSettings,
  ) {
    this.now = settings.now ?? Date.now
  }

  /** Runs `attempt` with this store's retry settings. */
  retry<T>(
    operation: string,
    signal: AbortSignal | undefined,
    attempt: (deadline: number) => Promise<T>,
  ): Promise<T> {
    return withRetry(
      operation,
      {
        timeoutMs: this.settings.requestTimeoutMs,
        attemptTimeoutMs: this.settings.dialTimeoutMs,
        random: this.settings.random,
        logger: this.settings.logger,
        signal,
      },
      attempt,
    )
  }

  /** The raw config text at `<prefix>/config`, or undefined when the key is absent. */
  async getConfigText(signal?: AbortSignal): Promise<string | undefined> {
    const key = this.settings.keys.config
    const res = await this.retry('read config', signal, (deadline) =>
      this.client.kv.range({ key: Buffer.from(key) }, { deadline }),
    )
    return res.kvs[0]?.value.toString()
  }

  /**
   * Every lease under `<prefix>/subnets/`; unparsable entries are logged and
   * left out. With `expirations: false` no TTL is looked up (each lease then
   * reads as expiring now): acquisition needs subnets and attributes only.
   */
  async list(signal?: AbortSignal, opts: { expirations?: boolean } = {}): Promise<LeaseListing> {
    const prefix = Buffer.from(this.settings.keys.subnets)
    const res = await this.retry('list leases', signal, (deadline) =>
      this.client.kv.range({ key: prefix, range_end: prefixEnd(prefix) }, { deadline }),
    )
    const parsed = await this.parseAll(res.kvs, signal, opts.expirations ?? true)
    const leases: StoredLease[] = []
    const unparsable: string[] = []
    for (const [i, p] of parsed.entries()) {
      if (p.ok) {
        leases.push(p.lease)
        continue
      }
      const kv = res.kvs[i]!
      this.warnSkipped(kv, p.reason)
      const name = this.settings.keys.subnetKeyOf(kv.key.toString())
      if (name !== undefined) unparsable.push(name)
    }
    if (opts.expirations ?? true) this.trimCache(new Set(leases.map((l) => l.etcdLease)))
    const present = new Set(res.kvs.map((kv) => kv.key.toString()))
    for (const key of [...this.warned.keys()]) {
      if (!present.has(key)) this.forgetSkipped(key, res.header.revision)
    }
    return { leases, revision: res.header.revision, unparsable }
  }

  /** Turns key/values into leases, looking TTLs up at most a few at a time. */
  async parseAll(
    kvs: readonly IKeyValue[],
    signal?: AbortSignal,
    expirations = true,
  ): Promise<Parsed[]> {
    const out: Parsed[] = new Array<Parsed>(kvs.length)
    let next = 0
    const worker = async (): Promise<void> => {
      while (next < kvs.length) {
        const i = next++
        out[i] = await this.parse(kvs[i]!, signal, expirations)
      }
    }
    await Promise.all(Array.from({ length: Math.min(TTL_LOOKUP_CONCURRENCY, kvs.length) }, worker))
    return out
  }

  /** Turns one key/value into a lease (spec: core.md sections 3 and 4.1). */
  async parse(kv: IKeyValue, signal?: AbortSignal, expirations = true): Promise<Parsed> {
    const key = kv.key.toString()
    const name = this.settings.keys.subnetKeyOf(key)
    if (name === undefined) return { ok: false, reason: 'not a lease key' }
    let subnets: ReturnType<typeof parseLeaseKey>
    try {
      // The canonical form only (see parseLeaseKey): `10.5.34.5-24` is not a lease.
      subnets = parseLeaseKey(name)
    } catch (err) {
      return { ok: false, reason: (err as Error).message }
    }
    const value = kv.value.toString()
    let attrs: Lease['attrs']
    try {
      attrs = decodeLeaseAttrs(value)
    } catch (err) {
      return { ok: false, reason: (err as Error).message }
    }
    const expiration = new Date(
      expirations ? await this.expirationOf(kv.lease, signal) : this.now(),
    )
    this.forgetSkipped(key, kv.mod_revision)
    const lease: Lease = {
      subnet: subnets.subnet,
      ...(subnets.ipv6Subnet === undefined ? {} : { ipv6Subnet: subnets.ipv6Subnet }),
      attrs,
      expiration,
    }
    return {
      ok: true,
      lease: { name, lease, value, etcdLease: kv.lease, modRevision: kv.mod_revision },
    }
  }

  /**
   * Logs an entry that is not a lease we can use; it is ignored, never
   * removes anything. Each entry is logged once per value it takes, however
   * many listings and watches meet it.
   */
  warnSkipped(kv: IKeyValue, reason: string): void {
    const key = kv.key.toString()
    const value = kv.value.toString()
    const modRevision = BigInt(kv.mod_revision)
    const before = this.warned.get(key)
    if (before !== undefined && (before.value === value || before.modRevision >= modRevision)) {
      return
    }
    if (this.warned.size >= WARNED_LIMIT) this.warned.clear()
    this.warned.set(key, { value, modRevision })
    this.settings.logger.warn(
      { key, value: value.slice(0, 200), reason },
      'ignoring unparsable lease entry in etcd',
    )
  }

  /**
   * The bad entry at `key` is gone as of `revision` (deleted, overwritten by
   * a good lease, or absent from a listing at that revision): a bad value
   * written later is warned about again. An older revision (another watch
   * running behind) changes nothing.
   */
  forgetSkipped(key: string, revision: string): void {
    const before = this.warned.get(key)
    if (before !== undefined && before.modRevision < BigInt(revision)) this.warned.delete(key)
  }

  /**
   * Expiration (ms since epoch) of keys on etcd lease `id`. A reservation
   * (no etcd lease) never expires; it reads as one TTL from now.
   */
  private async expirationOf(id: string, signal?: AbortSignal): Promise<number> {
    if (id === '0') return this.now() + this.settings.leaseTtlSeconds * 1000
    const known = this.expirations.get(id)
    if (known !== undefined) return known
    const res = await this.retry('read lease TTL', signal, (deadline) =>
      this.client.leaseClient.leaseTimeToLive({ ID: id }, { deadline }),
    )
    // TTL -1: the lease ran out a moment ago (its keys are being deleted).
    const ttl = Math.max(0, Number(res.TTL))
    const expiration = this.now() + ttl * 1000
    this.remember(id, expiration)
    return expiration
  }

  private remember(id: string, expiration: number): void {
    if (this.expirations.size >= TTL_CACHE_LIMIT) this.expirations.clear()
    this.expirations.set(id, expiration)
  }

  private trimCache(live: Set<string>): void {
    for (const id of this.expirations.keys()) if (!live.has(id)) this.expirations.delete(id)
  }

  /** Grants a fresh etcd lease of the configured TTL; returns its id and expiration. */
  async grant(signal?: AbortSignal): Promise<{ id: string; expiration: number }> {
    const ttl = this.settings.leaseTtlSeconds
    const res = await this.retry('grant etcd lease', signal, (deadline) =>
      this.client.leaseClient.leaseGrant({ TTL: ttl }, { deadline }),
    )
    if (res.error) throw new Error(`etcd lease grant failed: ${res.error}`)
    const expiration = this.now() + Number(res.TTL) * 1000
    this.remember(res.ID, expiration)
    return { id: res.ID, expiration }
  }

  /** Revokes an etcd lease, best effort (it runs out by itself anyway). */
  async revoke(id: string): Promise<void> {
    this.expirations.delete(id)
    try {
      await this.retry('revoke etcd lease', undefined, (deadline) =>
        this.client.leaseClient.leaseRevoke({ ID: id }, { deadline }),
      )
    } catch (err) {
      this.settings.logger.debug(
        { lease: id, err: (err as Error).message },
        'etcd lease revoke failed',
      )
    }
  }

  /**
   * Creates `<prefix>/subnets/<name>` with `value` on a fresh etcd lease, if
   * and only if the key does not exist (`version == 0`). Returns the
   * expiration, or undefined when the key exists (the granted lease is then
   * revoked).
   */
  async create(name: string, value: string, signal?: AbortSignal): Promise<Date | undefined> {
    const key = Buffer.from(this.settings.keys.lease(name))
    const granted = await this.grant(signal)
    let created: boolean
    try {
      created = await this.retry('create lease', signal, async (deadline) => {
        const res = await this.client.kv.txn(
          {
            compare: [{ key, target: 'Version', result: 'Equal', version: 0 }],
            success: [{ request_put: { key, value: Buffer.from(value), lease: granted.id } }],
            failure: [{ request_range: { key } }],
          },
          { deadline },
        )
        if (res.succeeded) return true
        // A retried transaction whose first try did apply finds our own write.
        const existing = res.responses[0]?.response_range?.kvs[0]
        return existing !== undefined && existing.lease === granted.id
      })
    } catch (err) {
      void this.revoke(granted.id)
      throw err
    }
    if (!created) {
      void this.revoke(granted.id)
      return undefined
    }
    return new Date(granted.expiration)
  }

  /**
   * Writes `value` at `<prefix>/subnets/<name>` on a freshly granted etcd
   * lease (flanneld's update and renewal; a reservation reused this way gets
   * a lease too, as flanneld v3 does). With `mustExist`, a missing key is not
   * re-created: `LeaseNotFoundError`.
   */
  async update(
    name: string,
    value: string,
    opts: { mustExist: boolean; signal?: AbortSignal | undefined },
  ): Promise<Date> {
    const { signal } = opts
    const full = this.settings.keys.lease(name)
    const key = Buffer.from(full)
    const data = Buffer.from(value)
    const granted = await this.grant(signal)
    // On a failure other than "not found" the new etcd lease is not revoked:
    // the put may have been applied in flight (abort, deadline), and revoking
    // would then delete the key. Unused, it simply runs out.
    const written = await this.retry('update lease', signal, async (deadline) => {
      if (!opts.mustExist) {
        await this.client.kv.put({ key, value: data, lease: granted.id }, { deadline })
        return true
      }
      const res = await this.client.kv.txn(
        {
          compare: [{ key, target: 'Version', result: 'Greater', version: 0 }],
          success: [{ request_put: { key, value: data, lease: granted.id } }],
          failure: [],
        },
        { deadline },
      )
      return res.succeeded
    })
    if (!written) {
      void this.revoke(granted.id)
      throw new LeaseNotFoundError(`lease ${full} does not exist in etcd`)
    }
    return new Date(granted.expiration)
  }

  /**
   * Deletes `<prefix>/subnets/<name>` (a plain delete, as flanneld; the etcd
   * lease it carried is left to run out, as it might hold other keys).
   */
  async remove(name: string, signal?: AbortSignal): Promise<void> {
    const key = Buffer.from(this.settings.keys.lease(name))
    await this.retry('delete lease', signal, (deadline) =>
      this.client.kv.deleteRange({ key }, { deadline }),
    )
  }
}

/** The end of the key range of every key starting with `prefix`. */
export function prefixEnd(prefix: Buffer): Buffer {
  const end = Buffer.from(prefix)
  for (let i = end.length - 1; i >= 0; i--) {
    if (end[i]! < 0xff) {
      end[i] = end[i]! + 1
      return end.subarray(0, i + 1)
    }
  }
  return Buffer.from([0])
}
