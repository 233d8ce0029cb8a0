/**
 * Helper of convergence.ts, run inside the switch namespace (where etcd
 * listens): writes N vxlan peer leases as fast as etcd takes them and prints
 * `first <epoch ms>` / `last <epoch ms>` for the first and last write.
 *
 *   convergence-writer.ts <endpoint> <prefix> <N>
 */
import { Etcd3 } from 'etcd3'

const [endpoint, prefix, count] = process.argv.slice(2)
const n = Number(count)
const client = new Etcd3({ hosts: endpoint! })
const lease = client.lease(3600, { autoKeepAlive: false })
const leaseId = await lease.grant()

function peer(i: number): { key: string; value: string } {
  const third = 1 + Math.floor(i / 250)
  const fourth = i % 250
  const subnet = `10.${third}.${fourth}.0-24`
  const mac = `0a:${[third >> 8, third & 255, fourth, 1, 2].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
  const value = `{"PublicIP":"198.51.100.${(i % 250) + 1}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`
  return { key: `${prefix}/subnets/${subnet}`, value }
}

const first = Date.now()
let next = 0
await Promise.all(
  Array.from({ length: 64 }, async () => {
    while (next < n) {
      const { key, value } = peer(next++)
      await client.put(key).value(value).lease(leaseId)
    }
  }),
)
const last = Date.now()
console.log(`first ${first}`)
console.log(`last ${last}`)
await lease.release()
client.close()
