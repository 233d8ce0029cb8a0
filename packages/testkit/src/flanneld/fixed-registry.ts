import { Observable } from 'rxjs'
import type { Etcd3 } from 'etcd3'
import {
  parseNetworkConfig,
  type Ip4Net,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type SubnetRegistry,
} from '@flannel/core'
import {
  decodeLeaseAttrs,
  encodeLeaseAttrs,
  parseLeaseKey,
  subnetKey,
} from '@flannel/core/registry'

/** A {@link SubnetRegistry} that hands out one fixed subnet, plus what it wrote. */
export interface FixedSubnetRegistry extends SubnetRegistry {
  /** The value bytes written by the last `acquireLease`, if any. */
  written(): string | undefined
}

/**
 * A minimal registry over a shared etcd for mixed-cluster tests, standing in
 * for EtcdRegistry: `acquireLease` writes `subnet` in flanneld's format
 * (`encodeLeaseAttrs`, a fresh 86400 s etcd lease, create guarded by
 * `version == 0`), and `watchLeases` lists `<prefix>/subnets/` once, then
 * follows changes from the next revision, leaving out its own subnet and
 * keys that do not parse; removals carry the cached lease. Renew and release
 * do nothing; closing cancels nothing beyond the open watches.
 */
export function fixedSubnetRegistry(opts: {
  readonly client: Etcd3
  readonly prefix: string
  readonly configText: string
  readonly subnet: Ip4Net
}): FixedSubnetRegistry {
  const { client, prefix, subnet } = opts
  let written: string | undefined
  const key = `${prefix}/subnets/${subnetKey(subnet)}`
  return {
    getNetworkConfig: async () => parseNetworkConfig(opts.configText),
    acquireLease: async (attrs: LeaseAttrs): Promise<Lease> => {
      written = encodeLeaseAttrs(attrs)
      const lease = client.lease(86400, { autoKeepAlive: false })
      const id = await lease.grant()
      const res = await client
        .if(key, 'Version', '==', 0)
        .then(client.put(key).value(written).lease(id))
        .commit()
      if (!res.succeeded) throw new Error(`${key} already exists`)
      return { subnet, attrs, expiration: new Date(Date.now() + 86_400_000) }
    },
    renewLease: async (lease) => lease,
    releaseLease: async () => {},
    watchLeases: () => peerEvents(client, prefix, subnet),
    close: async () => {},
    written: () => written,
  }
}

function peerEvents(client: Etcd3, prefix: string, own: Ip4Net): Observable<LeaseEvent[]> {
  return new Observable<LeaseEvent[]>((subscriber) => {
    const known = new Map<string, Lease>()
    const toLease = (key: string, value: string): Lease | undefined => {
      try {
        // the canonical key form every registry reads (no host bits); anything else is dropped
        const parsed = parseLeaseKey(key.slice(`${prefix}/subnets/`.length))
        if (parsed.subnet.equals(own)) return undefined
        return { subnet: parsed.subnet, attrs: decodeLeaseAttrs(value), expiration: new Date() }
      } catch {
        return undefined // a key or value that is not a lease: dropped, like flanneld v0.28
      }
    }
    let cancel: (() => Promise<void>) | undefined
    let closed = false
    void (async () => {
      const res = await client.getAll().prefix(`${prefix}/subnets/`).exec()
      const batch: LeaseEvent[] = []
      for (const kv of res.kvs) {
        const lease = toLease(kv.key.toString(), kv.value.toString())
        if (lease) {
          known.set(kv.key.toString(), lease)
          batch.push({ type: 'added', lease })
        }
      }
      subscriber.next(batch)
      const watcher = await client
        .watch()
        .prefix(`${prefix}/subnets/`)
        .startRevision(String(BigInt(res.header.revision) + 1n))
        .create()
      cancel = () => watcher.cancel()
      if (closed) await watcher.cancel()
      watcher.on('put', (kv) => {
        const lease = toLease(kv.key.toString(), kv.value.toString())
        if (!lease) return
        known.set(kv.key.toString(), lease)
        subscriber.next([{ type: 'added', lease }])
      })
      watcher.on('delete', (kv) => {
        const lease = known.get(kv.key.toString())
        known.delete(kv.key.toString())
        if (lease) subscriber.next([{ type: 'removed', lease }])
      })
    })().catch((err: unknown) => subscriber.error(err))
    return () => {
      closed = true
      void cancel?.()
    }
  })
}
