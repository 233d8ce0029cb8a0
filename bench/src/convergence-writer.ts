/**
 * Helper of convergence.ts, run inside the switch namespace (where etcd
 * listens): writes N vxlan peer leases as fast as etcd takes them and prints
 * `first <epoch ms>` / `last <epoch ms>` for the first and last write.
 *
 *   convergence-writer.ts <endpoint> <prefix> <N>
 */
import { Etcd3 } from 'etcd3'
import { peerLease } from './lib/peers.js'

const [endpoint, prefix, count] = process.argv.slice(2)
const n = Number(count)
const client = new Etcd3({ hosts: endpoint! })
const lease = client.lease(3600, { autoKeepAlive: false })
const leaseId = await lease.grant()

const first = Date.now()
let next = 0
await Promise.all(
  Array.from({ length: 64 }, async () => {
    while (next < n) {
      const { key, value } = peerLease(prefix!, next++)
      await client.put(key).value(value).lease(leaseId)
    }
  }),
)
const last = Date.now()
console.log(`first ${first}`)
console.log(`last ${last}`)
await lease.release()
client.close()
