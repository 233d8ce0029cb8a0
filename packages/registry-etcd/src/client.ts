import { Etcd3, type IOptions } from 'etcd3'
import { ExponentialBackoff, noop } from 'cockatiel'
import type { ResolvedOptions } from './options.js'

/**
 * Creates the etcd3 client. The client's own retry and circuit-breaker
 * policies are switched off: the registry retries with its own deadline and
 * backoff, so a call's duration is bounded by `requestTimeoutMs`.
 */
export function createEtcdClient(options: ResolvedOptions): Etcd3 {
  const config: IOptions = {
    hosts: [...options.endpoints],
    dialTimeout: options.dialTimeoutMs,
    faultHandling: {
      host: () => noop,
      global: noop,
      // Reconnects of the watch stream (flanneld: 100 ms doubling up to 5 s).
      watchBackoff: new ExponentialBackoff({ initialDelay: 100, maxDelay: 5_000 }).next(),
    },
    grpcOptions: {
      // Find a frozen or unplugged server within ~15 s even when idle; etcd
      // accepts pings no more often than every 5 s.
      'grpc.keepalive_time_ms': 10_000,
      'grpc.keepalive_timeout_ms': 5_000,
      'grpc.keepalive_permit_without_calls': 1,
      'grpc.initial_reconnect_backoff_ms': 100,
      'grpc.max_reconnect_backoff_ms': 2_000,
    },
  }
  if (options.tls !== undefined) {
    config.credentials = {
      // grpc falls back to the system roots when no CA is given.
      rootCertificate: options.tls.ca ?? (null as unknown as Buffer),
      ...(options.tls.key === undefined ? {} : { privateKey: options.tls.key }),
      ...(options.tls.cert === undefined ? {} : { certChain: options.tls.cert }),
    }
  }
  if (options.auth !== undefined) {
    config.auth = { username: options.auth.username, password: options.auth.password }
  }
  return new Etcd3(config)
}
