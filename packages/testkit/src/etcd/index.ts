/**
 * @flannel/testkit/etcd: a private etcd per test file (single node, or a
 * multi-member cluster for failover tests).
 *
 * ```ts
 * import { etcdMissingReason, startEtcd } from '@flannel/testkit/etcd'
 * const skip = etcdMissingReason()
 * describe.skipIf(skip)(`etcd tests${skip ? ` (skipped: ${skip})` : ''}`, () => { ... })
 * ```
 */
export {
  etcdAvailable,
  etcdBinary,
  etcdMissingReason,
  etcdctlBinary,
  etcdctlMissingReason,
} from './available.js'
export { generateTestCertificates } from './certs.js'
export type { TestCertificateOptions, TestCertificates } from './certs.js'
export { startEtcd } from './launcher.js'
export type { EtcdServer, StartEtcdOptions } from './launcher.js'
export { startEtcdCluster } from './cluster.js'
export type { EtcdCluster, StartEtcdClusterOptions } from './cluster.js'
