import { randomBytes } from 'node:crypto'
import { afterAll, beforeAll, describe } from 'vitest'
import type { Etcd3 } from 'etcd3'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { describeRegistryConformance } from '@flannel/testkit/conformance'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'

const missing = etcdMissingReason()
if (missing) console.warn(`EtcdRegistry conformance skipped: ${missing}`)

describe.skipIf(missing !== undefined)(
  `EtcdRegistry on a real etcd${missing ? ` (skipped: ${missing})` : ''}`,
  () => {
    let etcd: EtcdServer
    let raw: Etcd3
    const run = randomBytes(2).toString('hex')
    let counter = 0

    beforeAll(async () => {
      etcd = await startEtcd()
      raw = etcd.connect()
    })
    afterAll(async () => {
      await etcd?.stop()
    })

    // A fresh prefix per case keeps the cases apart on the one etcd. etcd's
    // leases run on its own clock, so there is no advance(): expiry is skipped.
    describeRegistryConformance('EtcdRegistry', async (config) => {
      const prefix = `/conformance-${run}/n${++counter}/network`
      await raw.put(`${prefix}/config`).value(config)
      const registry = new EtcdRegistry({ endpoints: etcd.endpoints, prefix })
      return {
        registry,
        close: async () => {
          await registry.close()
          await raw.delete().prefix(`${prefix}/`)
        },
      }
    })
  },
)
