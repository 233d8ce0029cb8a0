import { afterAll, beforeAll, describe, it } from 'vitest'
import type { Etcd3 } from 'etcd3'
import { describeRegistryConformance } from '@flannel/testkit/conformance'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'
import { EtcdRegistry } from '@flannel/registry-etcd'

const missing = etcdMissingReason()
if (missing) console.warn(`EtcdRegistry conformance skipped: ${missing}`)

if (missing !== undefined) {
  describe(`SubnetRegistry conformance: EtcdRegistry (skipped: ${missing})`, () => {
    it.skip(`needs etcd: ${missing}`, () => undefined)
  })
} else {
  let etcd: EtcdServer
  let raw: Etcd3
  let n = 0
  beforeAll(async () => {
    etcd = await startEtcd()
    raw = etcd.connect()
  })
  afterAll(async () => {
    await etcd?.stop()
  })

  // One etcd for the file; every case gets its own prefix. Expiry cases need
  // a clock the suite can move, which a real etcd does not have: they are
  // skipped here and covered by the real-TTL test in etcd-registry.integration.
  describeRegistryConformance('EtcdRegistry (real etcd)', async (configJson) => {
    const prefix = `/conformance${++n}/network`
    await raw.put(`${prefix}/config`).value(configJson)
    const registry = new EtcdRegistry({ endpoints: etcd.endpoints, prefix })
    return {
      registry,
      close: async () => {
        await registry.close()
        await raw.delete().prefix(`${prefix}/`)
      },
    }
  })
}
