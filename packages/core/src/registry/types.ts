import type { Observable } from 'rxjs'
import type { NetworkConfig } from '../config/types.js'
import type { Lease, LeaseAttrs, LeaseEvent, PreviousSubnets } from '../lease/types.js'

/** Options every registry call takes. */
export interface CallOptions {
  /** Aborts the call; it then rejects with an `AbortError`. */
  readonly signal?: AbortSignal | undefined
}

/** Options of {@link SubnetRegistry.acquireLease}. */
export interface AcquireOptions extends CallOptions {
  /** The subnets this host held before; reused when still free and compatible. */
  readonly previous?: PreviousSubnets | undefined
}

/**
 * Where the cluster's leases live (memory, etcd, ...). Acquisition follows
 * flanneld exactly (spec: core.md section 5); watches follow section 7.
 */
export interface SubnetRegistry {
  /** Reads and validates the network config. */
  getNetworkConfig(opts?: CallOptions): Promise<NetworkConfig>
  /**
   * Acquires a lease for a host publishing `attrs`: the lease already carrying
   * `attrs.publicIP` if compatible, else the previous subnet if free, else a
   * random pick among the lowest 100 free subnets. Rejects with
   * `SubnetExhaustedError` when nothing is free.
   */
  acquireLease(attrs: LeaseAttrs, opts?: AcquireOptions): Promise<Lease>
  /** Extends the lease by the registry's TTL, keeping its attributes. */
  renewLease(lease: Lease, opts?: CallOptions): Promise<Lease>
  /** Deletes the lease (used to leave nothing behind when start-up fails). */
  releaseLease(lease: Lease, opts?: CallOptions): Promise<void>
  /**
   * Cold stream of lease changes, this host's own lease included. On
   * subscribe: one batch with every current lease as `added`; then non-empty
   * batches of deltas. Lost watches are healed inside by a snapshot diff.
   * Unsubscribing stops everything it started.
   */
  watchLeases(): Observable<LeaseEvent[]>
  /**
   * `false` when this registry never revokes a lease (flanneld's kube mode:
   * the lease is the Node's podCIDR, without TTL or renewal). The Agent then
   * neither renews nor watches its own lease, so a deleted own Node leaves it running as
   * it leaves flanneld running (main.go calls `MonitorLease` only outside kube
   * mode). Absent means `true`.
   */
  readonly revokesLeases?: boolean | undefined
  /**
   * What this host published the last time, where the registry keeps it
   * apart from the lease (kube mode: the own Node's annotations). The vxlan
   * backend gives a device it creates the `VtepMAC` found here, as
   * flanneld's `GetStoredMacAddresses`. Optional; resolves to undefined when
   * nothing is known or the read failed (the failure is logged), and rejects
   * only on abort.
   */
  storedAttrs?(opts?: CallOptions): Promise<StoredAttrs | undefined>
  /** Releases connections and timers. The registry is unusable afterwards. */
  close(): Promise<void>
}

/** The attributes a host published before, as {@link SubnetRegistry.storedAttrs} reads them. */
export interface StoredAttrs {
  readonly backendType?: string | undefined
  /** Decoded `BackendData` (e.g. `{ VNI: 1, VtepMAC: '...' }`), undefined when absent or `null`. */
  readonly backendData?: unknown
  /** Decoded `BackendV6Data`. */
  readonly backendV6Data?: unknown
}
