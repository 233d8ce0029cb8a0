import { Address6 } from 'ip-address'
import { InvalidArgumentError } from '../errors.js'

const MAX6 = (1n << 128n) - 1n

/** True when `text` is an IPv6 address (no zone, no prefix). */
export function isIp6(text: string): boolean {
  return /^[0-9a-fA-F:.]+$/.test(text) && text.includes(':') && Address6.isValid(text)
}

/** Parses an IPv6 address into a 128-bit bigint. */
export function parseIp6(text: string, field = 'IPv6 address'): bigint {
  if (!isIp6(text)) throw new InvalidArgumentError(field, text, 'not an IPv6 address')
  return new Address6(text).bigInt()
}

/** Formats a 128-bit bigint as canonical IPv6 text (RFC 5952, as Go prints it). */
export function formatIp6(ip: bigint): string {
  return Address6.fromBigInt(ip).correctForm()
}

/** The netmask of an IPv6 prefix length as a bigint. */
export function ip6Mask(prefixLength: number): bigint {
  return prefixLength === 0 ? 0n : (MAX6 << BigInt(128 - prefixLength)) & MAX6
}

/** An IPv6 network (address and prefix length). Immutable. */
export class Ip6Net {
  /** Network address as a 128-bit bigint. */
  readonly ip: bigint
  /** Prefix length, 0..128. */
  readonly prefixLength: number

  constructor(ip: bigint, prefixLength: number) {
    if (!Number.isInteger(prefixLength) || prefixLength < 0 || prefixLength > 128) {
      throw new InvalidArgumentError(
        'prefix length',
        prefixLength,
        'must be an integer from 0 to 128',
      )
    }
    if (ip < 0n || ip > MAX6)
      throw new InvalidArgumentError('IPv6 address', ip.toString(), 'out of range')
    this.ip = ip
    this.prefixLength = prefixLength
  }

  /** Parses `addr/len`; host bits are masked off. */
  static parse(cidr: string, field = 'IPv6 network'): Ip6Net {
    const slash = cidr.indexOf('/')
    if (slash < 0) throw new InvalidArgumentError(field, cidr, 'expected addr/len')
    const ip = parseIp6(cidr.slice(0, slash), field)
    const lenText = cidr.slice(slash + 1)
    if (!/^\d{1,3}$/.test(lenText) || Number(lenText) > 128) {
      throw new InvalidArgumentError(field, cidr, 'prefix length must be 0..128')
    }
    const len = Number(lenText)
    return new Ip6Net(ip & ip6Mask(len), len)
  }

  /** The empty network `::/0`, which flannel treats as "not set". */
  static readonly EMPTY = new Ip6Net(0n, 0)

  /** True for `::/0`, flannel's "not set". */
  get isEmpty(): boolean {
    return this.ip === 0n && this.prefixLength === 0
  }

  /** The netmask as a bigint. */
  get mask(): bigint {
    return ip6Mask(this.prefixLength)
  }

  /** Number of addresses: 2^(128 - prefixLength). */
  get size(): bigint {
    return 1n << BigInt(128 - this.prefixLength)
  }

  /** The network address in canonical text. */
  get address(): string {
    return formatIp6(this.ip)
  }

  /** This network with host bits cleared. */
  masked(): Ip6Net {
    const ip = this.ip & this.mask
    return ip === this.ip ? this : new Ip6Net(ip, this.prefixLength)
  }

  /** The next network of the same prefix length. */
  next(): Ip6Net {
    return new Ip6Net((this.ip + this.size) & MAX6, this.prefixLength)
  }

  /** True when `ip` (a bigint or text) is inside this network. */
  contains(ip: bigint | string): boolean {
    const n = typeof ip === 'string' ? parseIp6(ip) : ip
    return (n & this.mask) === (this.ip & this.mask)
  }

  /** True when the two networks share an address (compared at the shorter prefix). */
  overlaps(other: Ip6Net): boolean {
    const m = ip6Mask(Math.min(this.prefixLength, other.prefixLength))
    return (this.ip & m) === (other.ip & m)
  }

  /** Same address and prefix length. */
  equals(other: Ip6Net | undefined): boolean {
    return other !== undefined && this.ip === other.ip && this.prefixLength === other.prefixLength
  }

  /** `addr/len` in canonical text. */
  toString(): string {
    return `${formatIp6(this.ip)}/${this.prefixLength}`
  }

  /** The etcd key form `addr-len`. */
  toKey(): string {
    return `${formatIp6(this.ip)}-${this.prefixLength}`
  }

  /** JSON form: the CIDR text. */
  toJSON(): string {
    return this.toString()
  }
}
