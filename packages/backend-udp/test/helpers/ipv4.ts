/** Tiny IPv4 (ICMP, TCP) packet builders and parser for wire checks. */

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

/** What {@link tcp4} builds; every field has a well-formed default. */
export interface Tcp4Spec {
  src: string
  dst: string
  sport?: number
  dport?: number
  seq?: number
  ack?: number
  /** TCP flags byte; default ACK. */
  flags?: number
  window?: number
  /** TCP options, a multiple of 4 bytes. */
  options?: Buffer
  /** IPv4 options, a multiple of 4 bytes. */
  ipOptions?: Buffer
  payload?: Buffer
  id?: number
  ttl?: number
  tos?: number
  /** Don't-fragment bit; default set. */
  df?: boolean
}

/** A well-formed IPv4/TCP packet with both checksums right. */
export function tcp4(spec: Tcp4Spec): Buffer {
  const options = spec.options ?? Buffer.alloc(0)
  const ipOptions = spec.ipOptions ?? Buffer.alloc(0)
  const payload = spec.payload ?? Buffer.alloc(0)
  const tcp = Buffer.alloc(20 + options.length + payload.length)
  tcp.writeUInt16BE(spec.sport ?? 40000, 0)
  tcp.writeUInt16BE(spec.dport ?? 5201, 2)
  tcp.writeUInt32BE((spec.seq ?? 1000) >>> 0, 4)
  tcp.writeUInt32BE((spec.ack ?? 2000) >>> 0, 8)
  tcp[12] = ((20 + options.length) / 4) << 4
  tcp[13] = spec.flags ?? 0x10
  tcp.writeUInt16BE(spec.window ?? 512, 14)
  options.copy(tcp, 20)
  payload.copy(tcp, 20 + options.length)
  const pseudo = Buffer.alloc(12)
  ip4(spec.src).copy(pseudo, 0)
  ip4(spec.dst).copy(pseudo, 4)
  pseudo[9] = 6
  pseudo.writeUInt16BE(tcp.length, 10)
  tcp.writeUInt16BE(checksum(Buffer.concat([pseudo, tcp])), 16)
  const ip = Buffer.alloc(20 + ipOptions.length)
  ip[0] = 0x40 | (ip.length / 4)
  ip[1] = spec.tos ?? 0
  ip.writeUInt16BE(ip.length + tcp.length, 2)
  ip.writeUInt16BE(spec.id ?? 1, 4)
  ip.writeUInt16BE(spec.df === false ? 0 : 0x4000, 6)
  ip[8] = spec.ttl ?? 64
  ip[9] = 6
  ip4(spec.src).copy(ip, 12)
  ip4(spec.dst).copy(ip, 16)
  ipOptions.copy(ip, 20)
  ip.writeUInt16BE(checksum(ip), 10)
  return Buffer.concat([ip, tcp])
}

/** An IPv4/UDP packet; `udpLength` overrides the UDP length field (default: right). */
export function udp4(
  src: string,
  dst: string,
  payload: Buffer,
  udpLength = 8 + payload.length,
): Buffer {
  const pkt = Buffer.alloc(28 + payload.length)
  pkt[0] = 0x45
  pkt.writeUInt16BE(pkt.length, 2)
  pkt[8] = 64
  pkt[9] = 17
  ip4(src).copy(pkt, 12)
  ip4(dst).copy(pkt, 16)
  pkt.writeUInt16BE(checksum(pkt.subarray(0, 20)), 10)
  pkt.writeUInt16BE(5353, 20)
  pkt.writeUInt16BE(5353, 22)
  pkt.writeUInt16BE(udpLength & 0xffff, 24)
  payload.copy(pkt, 28)
  return pkt
}

/** Recomputes the IPv4 header checksum in place (after a test edited the header). */
export function fixIp4Checksum(pkt: Buffer): Buffer {
  const ihl = Math.min((pkt[0]! & 0x0f) * 4, pkt.length)
  if (ihl < 12) return pkt
  pkt.writeUInt16BE(0, 10)
  pkt.writeUInt16BE(checksum(pkt.subarray(0, ihl)), 10)
  return pkt
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
