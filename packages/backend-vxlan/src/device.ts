import { randomBytes } from 'node:crypto'
import type { Logger } from '@flannel/core'
import {
  isNetlinkError,
  type AddressFamily,
  type HostNetwork,
  type Link,
  type VxlanLinkSpec,
} from '@flannel/linux'
import { normalizeIp } from '@flannel/linux/backend'
import { VxlanDeviceError } from './errors.js'

/** A random locally administered unicast MAC, as flanneld makes for a new device. */
export function randomVtepMac(): string {
  const b = randomBytes(6)
  b[0] = (b[0]! & 0xfe) | 0x02
  return [...b].map((x) => x.toString(16).padStart(2, '0')).join(':')
}

/**
 * Why an existing device cannot be kept for `spec`, or undefined when it can
 * (backends.md 1.2: kind, VNI, lower device and local address when both set,
 * port when both > 0, GBP). MAC and learning of a kept device stay; its MTU
 * is set to the wanted one ({@link setDeviceMtu}).
 */
export function incompatibility(link: Link, spec: VxlanLinkSpec): string | undefined {
  if (link.kind !== 'vxlan' || !link.vxlan) return `type ${link.kind ?? 'unknown'}, not vxlan`
  const v = link.vxlan
  if (v.vni !== spec.vni) return `VNI ${v.vni}, wanted ${spec.vni}`
  if (v.lowerIndex && spec.lowerIndex && v.lowerIndex !== spec.lowerIndex) {
    return `lower device ${v.lowerIndex}, wanted ${spec.lowerIndex}`
  }
  if (v.local && spec.local && normalizeIp(v.local) !== normalizeIp(spec.local)) {
    return `local ${v.local}, wanted ${spec.local}`
  }
  if (v.port > 0 && (spec.port ?? 0) > 0 && v.port !== spec.port) {
    return `port ${v.port}, wanted ${spec.port}`
  }
  if (v.gbp !== (spec.gbp ?? false)) return `gbp ${v.gbp}, wanted ${spec.gbp ?? false}`
  return undefined
}

/** The device after {@link ensureDevice}: the link and whether this call created it. */
export interface EnsuredDevice {
  readonly link: Link
  readonly created: boolean
}

/**
 * Keeps a compatible existing device, else (re)creates it with a fresh random
 * MAC (or `mac` when given, e.g. to recreate a deleted device with the MAC
 * already published).
 */
export async function ensureDevice(
  host: HostNetwork,
  spec: VxlanLinkSpec,
  logger: Logger,
): Promise<EnsuredDevice> {
  const existing = await host.getLink(spec.name)
  if (existing) {
    const why = incompatibility(existing, spec)
    if (why === undefined) return { link: existing, created: false }
    logger.warn(
      { device: spec.name, reason: why },
      `${spec.name} already exists with incompatible configuration: ${why}; recreating device`,
    )
    await host.deleteLink(existing.index).catch((error: unknown) => {
      if (!isNetlinkError(error, 'ENODEV')) throw error
    })
  }
  const link = await host.createVxlanLink({ ...spec, mac: spec.mac ?? randomVtepMac() })
  return { link, created: true }
}

/**
 * Gives the device exactly one address of its family inside the pod network
 * (`<subnet address>/32` or `/128`), sets it up and checks its MAC.
 */
export async function configureDevice(
  host: HostNetwork,
  link: Link,
  family: AddressFamily,
  address: string,
  inNetwork: (ip: string) => boolean,
  publishedMac: string,
): Promise<void> {
  const prefixLength = family === 'inet' ? 32 : 128
  const wanted = normalizeIp(address)
  let present = false
  for (const a of await host.listAddresses({ linkIndex: link.index, family })) {
    if (a.address === wanted && a.prefixLength === prefixLength) {
      present = true
      continue
    }
    const removable = family === 'inet' ? inNetwork(a.address) : !/^fe[89ab]/i.test(a.address)
    if (removable) await host.deleteAddress(a)
  }
  if (!present) {
    await host
      .addAddress({ linkIndex: link.index, family, address: wanted, prefixLength })
      .catch((error: unknown) => {
        if (!isNetlinkError(error, 'EEXIST')) throw error
      })
  }
  await host.setLinkUp(link.index, true)
  const now = await host.getLink(link.index)
  if (!now) throw new VxlanDeviceError(link.name, `${link.name} vanished while being configured`)
  if (now.mac !== publishedMac) {
    throw new VxlanDeviceError(
      link.name,
      `${link.name}'s mac address wanted: ${publishedMac}, but got: ${now.mac ?? ''}`,
    )
  }
}

/**
 * Sets the device's MTU to `mtu` unless it already has it; returns the MTU it
 * had when it was changed, undefined when it was right.
 */
export async function setDeviceMtu(
  host: HostNetwork,
  link: Link,
  mtu: number,
): Promise<number | undefined> {
  if (link.mtu === mtu) return undefined
  await host.setLinkMtu(link.index, mtu)
  return link.mtu
}
