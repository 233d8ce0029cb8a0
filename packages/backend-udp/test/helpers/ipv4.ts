/** Tiny IPv4/ICMP packet builder and parser for wire checks. */

function checksum(buf: Buffer): number {
  let sum = 0
  for (let i = 0; i + 1 < buf.length; i += 2) sum += buf.readUInt16BE(i)
  if (buf.length % 2) sum += buf[buf.length - 1]! << 8
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16)
  return ~sum & 0xffff
}

function ip4(text: string): Buffer {
  return Buffer.from(text.split('.').map(Number))
}

/** An ICMP echo request from src to dst with the given TTL, id and payload. */
export function icmpEcho(
  src: string,
  dst: string,
  ttl: number,
  id: number,
  payload: Buffer,
): Buffer {
  const icmp = Buffer.alloc(8 + payload.length)
  icmp[0] = 8
  icmp.writeUInt16BE(id, 4)
  icmp.writeUInt16BE(1, 6)
  payload.copy(icmp, 8)
  icmp.writeUInt16BE(checksum(icmp), 2)
  const ip = Buffer.alloc(20)
  ip[0] = 0x45
  ip.writeUInt16BE(20 + icmp.length, 2)
  ip.writeUInt16BE(id, 4)
  ip[8] = ttl
  ip[9] = 1
  ip4(src).copy(ip, 12)
  ip4(dst).copy(ip, 16)
  ip.writeUInt16BE(checksum(ip), 10)
  return Buffer.concat([ip, icmp])
}

/** The fields of an IPv4 header a test looks at. */
export interface Ip4Header {
  version: number
  ihl: number
  totalLength: number
  ttl: number
  protocol: number
  src: string
  dst: string
  checksumOk: boolean
}

export function parseIp4(buf: Buffer): Ip4Header {
  const ihl = (buf[0]! & 0x0f) * 4
  return {
    version: buf[0]! >> 4,
    ihl,
    totalLength: buf.readUInt16BE(2),
    ttl: buf[8]!,
    protocol: buf[9]!,
    src: [...buf.subarray(12, 16)].join('.'),
    dst: [...buf.subarray(16, 20)].join('.'),
    checksumOk: checksum(buf.subarray(0, ihl)) === 0,
  }
}

/** UDP payloads to/from `port` in a pcap file (Ethernet link type). */
export function udpPayloadsFromPcap(pcap: Buffer, port: number): Buffer[] {
  const out: Buffer[] = []
  let off = 24
  while (off + 16 <= pcap.length) {
    const incl = pcap.readUInt32LE(off + 8)
    const frame = pcap.subarray(off + 16, off + 16 + incl)
    off += 16 + incl
    if (frame.length < 14 + 28 || frame.readUInt16BE(12) !== 0x0800) continue
    const ip = frame.subarray(14)
    if (ip[9] !== 17) continue
    const udp = ip.subarray((ip[0]! & 0x0f) * 4)
    if (udp.readUInt16BE(0) !== port && udp.readUInt16BE(2) !== port) continue
    const len = udp.readUInt16BE(4)
    out.push(udp.subarray(8, len))
  }
  return out
}

/** Packets of a pcap file with the raw-IP link type (a TUN capture). */
export function rawPackets(pcap: Buffer): Buffer[] {
  const out: Buffer[] = []
  let off = 24
  while (off + 16 <= pcap.length) {
    const incl = pcap.readUInt32LE(off + 8)
    out.push(pcap.subarray(off + 16, off + 16 + incl))
    off += 16 + incl
  }
  return out
}
