/**
 * @flannel/testkit/etcd: a private single-node etcd per test file.
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
export type { TestCertificates } from './certs.js'
export { startEtcd } from './launcher.js'
export type { EtcdServer, StartEtcdOptions } from './launcher.js'
