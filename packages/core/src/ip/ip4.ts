import { InvalidArgumentError } from '../errors.js'

// Dotted quad, octets 0..255, no leading zeros (Go's net.ParseIP rules).
const OCTET = '(?:25[0-5]|2[0-4]\\d|1\\d\\d|[1-9]?\\d)'
const IPV4_RE = new RegExp(`^${OCTET}\\.${OCTET}\\.${OCTET}\\.${OCTET}$`)

/** True when `text` is an IPv4 address in dotted-quad form. */
export function isIp4(text: string): boolean {
  return IPV4_RE.test(text)
}

/** Parses a dotted-quad IPv4 address into an unsigned 32-bit number. */
export function parseIp4(text: string, field = 'IPv4 address'): number {
  if (!IPV4_RE.test(text)) throw new InvalidArgumentError(field, text, 'not an IPv4 address')
  const [a, b, c, d] = text.split('.').map(Number) as [number, number, number, number]
  return ((a << 24) | (b << 16) | (c << 8) | d) >>> 0
}

/** Formats an unsigned 32-bit number as a dotted-quad IPv4 address. */
export function formatIp4(ip: number): string {
  return `${ip >>> 24}.${(ip >>> 16) & 255}.${(ip >>> 8) & 255}.${ip & 255}`
}

/** The netmask of an IPv4 prefix length as an unsigned 32-bit number. */
export function ip4Mask(prefixLength: number): number {
  return prefixLength === 0 ? 0 : (0xffffffff << (32 - prefixLength)) >>> 0
}

/** An IPv4 network (address and prefix length). Immutable. */
export class Ip4Net {
  /** Network address as an unsigned 32-bit number (host bits may be set unless masked). */
  readonly ip: number
  /** Prefix length, 0..32. */
  readonly prefixLength: number

  constructor(ip: number, prefixLength: number) {
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 32) {
      throw new InvalidArgumentError(
        'prefix length',
        prefixLength,
        'must be an integer from 0 to 32',
      )
    }
    if (!Number.isInteger(ip) || ip < 0 || ip > 0xffffffff) {
      throw new InvalidArgumentError('IPv4 address', ip, 'must be an unsigned 32-bit integer')
    }
    this.ip = ip
    this.prefixLength = prefixLength
  }

  /**
   * Parses `a.b.c.d/len`. Host bits are masked off, as flanneld does when it
   * reads a network from config or subnet.env (`10.5.52.1/24` -> `10.5.52.0/24`).
   */
  static parse(cidr: string, field = 'IPv4 network'): Ip4Net {
    const slash = cidr.indexOf('/')
    if (slash < 0) throw new InvalidArgumentError(field, cidr, 'expected a.b.c.d/len')
    const ip = parseIp4(cidr.slice(0, slash), field)
    const lenText = cidr.slice(slash + 1)
    if (!/^\d{1,2}$/.test(lenText) || Number(lenText) > 32) {
      throw new InvalidArgumentError(field, cidr, 'prefix length must be 0..32')
    }
    const len = Number(lenText)
    return new Ip4Net((ip & ip4Mask(len)) >>> 0, len)
  }

  /** The empty network `0.0.0.0/0`, which flannel treats as "not set". */
  static readonly EMPTY = new Ip4Net(0, 0)

  /** True for `0.0.0.0/0`, flannel's "not set". */
  get isEmpty(): boolean {
    return this.ip === 0 && this.prefixLength === 0
  }

  /** The netmask as an unsigned 32-bit number. */
  get mask(): number {
    return ip4Mask(this.prefixLength)
  }

  /** Number of addresses: 2^(32 - prefixLength). */
  get size(): number {
    return 2 ** (32 - this.prefixLength)
  }

  /** The network address in dotted-quad form. */
  get address(): string {
    return formatIp4(this.ip)
  }

  /** This network with host bits cleared. */
  masked(): Ip4Net {
    const ip = (this.ip & this.mask) >>> 0
    return ip === this.ip ? this : new Ip4Net(ip, this.prefixLength)
  }

  /** The next network of the same prefix length (address + size). */
  next(): Ip4Net {
    return new Ip4Net((this.ip + this.size) % 2 ** 32, this.prefixLength)
  }

  /** True when `ip` (a number or dotted quad) is inside this network. */
  contains(ip: number | string): boolean {
    const n = typeof ip === 'string' ? parseIp4(ip) : ip
    const m = this.mask
    return (n & m) >>> 0 === (this.ip & m) >>> 0
  }

  /** True when the two networks share an address (compared at the shorter prefix). */
  overlaps(other: Ip4Net): boolean {
    const m = ip4Mask(Math.min(this.prefixLength, other.prefixLength))
    return (this.ip & m) >>> 0 === (other.ip & m) >>> 0
  }

  /** Same address and prefix length. */
  equals(other: Ip4Net | undefined): boolean {
    return other !== undefined && this.ip === other.ip && this.prefixLength === other.prefixLength
  }

  /** `a.b.c.d/len`. */
  toString(): string {
    return `${formatIp4(this.ip)}/${this.prefixLength}`
  }

  /** The etcd key form `a.b.c.d-len`. */
  toKey(): string {
    return `${formatIp4(this.ip)}-${this.prefixLength}`
  }

  /** JSON form: the CIDR text. */
  toJSON(): string {
    return this.toString()
  }
}
