import {
  InvalidArgumentError,
  formatIp4,
  formatIp6,
  ip4Mask,
  ip6Mask,
  isIp4,
  isIp6,
  parseIp4,
  parseIp6,
} from '@flannel/core'
import type { AddressFamily } from './types.js'

/** The family of an IP address in text form; throws InvalidArgumentError naming `field`. */
export function familyOf(ip: string, field = 'address'): AddressFamily {
  if (isIp4(ip)) return 'inet'
  if (isIp6(ip)) return 'inet6'
  throw new InvalidArgumentError(field, ip, 'not an IPv4 or IPv6 address')
}

/** Canonical text of an IP address (IPv6 compressed, lower-case). */
export function normalizeIp(ip: string, field = 'address'): string {
  return familyOf(ip, field) === 'inet'
    ? formatIp4(parseIp4(ip, field))
    : formatIp6(parseIp6(ip, field))
}

/** Raw bytes of an IP address (4 or 16). */
export function ipToBytes(ip: string, field = 'address'): Buffer {
  if (familyOf(ip, field) === 'inet') {
    const b = Buffer.alloc(4)
    b.writeUInt32BE(parseIp4(ip, field))
    return b
  }
  let v = parseIp6(ip, field)
  const b = Buffer.alloc(16)
  for (let i = 15; i >= 0; i--) {
    b[i] = Number(v & 0xffn)
    v >>= 8n
  }
  return b
}

/** Text form of 4 or 16 raw address bytes. */
export function bytesToIp(bytes: Uint8Array): string {
  if (bytes.length === 4) return `${bytes[0]}.${bytes[1]}.${bytes[2]}.${bytes[3]}`
  if (bytes.length === 16) {
    let v = 0n
    for (const byte of bytes) v = (v << 8n) | BigInt(byte)
    return formatIp6(v)
  }
  throw new InvalidArgumentError('address bytes', bytes.length, 'expected 4 or 16 bytes')
}

/** A parsed CIDR network with host bits cleared. */
export interface Cidr {
  readonly family: AddressFamily
  readonly address: string
  readonly prefixLength: number
}

/** Parses `addr/len` (or a bare address as a host route), clearing host bits. */
export function parseCidr(text: string, field = 'destination'): Cidr {
  const slash = text.indexOf('/')
  const ipText = slash < 0 ? text : text.slice(0, slash)
  const family = familyOf(ipText, field)
  const max = family === 'inet' ? 32 : 128
  const lenText = slash < 0 ? String(max) : text.slice(slash + 1)
  if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > max) {
    throw new InvalidArgumentError(field, text, `prefix length must be 0..${max}`)
  }
  const prefixLength = Number(lenText)
  const address =
    family === 'inet'
      ? formatIp4((parseIp4(ipText, field) & ip4Mask(prefixLength)) >>> 0)
      : formatIp6(parseIp6(ipText, field) & ip6Mask(prefixLength))
  return { family, address, prefixLength }
}

/** Canonical `addr/len` text of a CIDR network. */
export function formatCidr(cidr: Cidr): string {
  return `${cidr.address}/${cidr.prefixLength}`
}

/** Canonical text of a network (`10.244.2.7/24` -> `10.244.2.0/24`). */
export function normalizeCidr(text: string, field = 'destination'): string {
  return formatCidr(parseCidr(text, field))
}

/** True when `ip` lies inside `cidr`. */
export function cidrContains(cidr: Cidr, ip: string): boolean {
  if (familyOf(ip) !== cidr.family) return false
  return parseCidr(`${ip}/${cidr.prefixLength}`).address === cidr.address
}

const MAC_RE = /^[0-9a-f]{1,2}(?::[0-9a-f]{1,2}){5}$/i

/** Canonical lower-case `aa:bb:cc:dd:ee:ff`; throws InvalidArgumentError naming `field`. */
export function normalizeMac(mac: string, field = 'mac'): string {
  if (!MAC_RE.test(mac)) throw new InvalidArgumentError(field, mac, 'not a 48-bit MAC address')
  return mac
    .split(':')
    .map((h) => h.toLowerCase().padStart(2, '0'))
    .join(':')
}

/** Raw bytes of a MAC address. */
export function macToBytes(mac: string, field = 'mac'): Buffer {
  return Buffer.from(
    normalizeMac(mac, field)
      .split(':')
      .map((h) => parseInt(h, 16)),
  )
}

/** Text form of raw MAC bytes. */
export function bytesToMac(bytes: Uint8Array): string {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join(':')
}
