/** The peers the benches write into etcd and into the kernel, numbered from 0. */

/** Peer `i` of a bench run: subnet, VTEP MAC and public IP (TEST-NET-2). */
export function peerEntry(i: number): { net: string; mac: string; publicIp: string } {
  const third = 1 + Math.floor(i / 250)
  const fourth = i % 250
  const mac = `0a:${[third >> 8, third & 255, fourth, 1, 2].map((b) => b.toString(16).padStart(2, '0')).join(':')}`
  return { net: `10.${third}.${fourth}.0`, mac, publicIp: `198.51.100.${(i % 250) + 1}` }
}

/** Peer `i` as a vxlan lease: key under `<prefix>/subnets/` and flannel's JSON value. */
export function peerLease(prefix: string, i: number): { key: string; value: string } {
  const { net, mac, publicIp } = peerEntry(i)
  const value = `{"PublicIP":"${publicIp}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`
  return { key: `${prefix}/subnets/${net}-24`, value }
}
