import { createRequire } from 'node:module'
import { fileURLToPath } from 'node:url'
import { UdpNativeUnavailableError } from './errors.js'

/** Loop modes as the addon numbers them. */
export const NATIVE_MODE = { single: 0, batch: 1, offload: 2 } as const

/** Configuration of a native forwarding loop. */
export interface NativeLoopConfig {
  tunFd: number
  bindAddr: string
  port: number
  tunAddr: string
  mtu: number
  mode: number
  batch: number
  verifySource: boolean
  vnetHdr: boolean
}

/** Opaque handle of a native loop. */
export type NativeLoop = { readonly __nativeLoop: unique symbol }

/** The addon's functions (native/addon.c). */
export interface NativeAddon {
  openTun(name: string, vnetHdr: boolean): { fd: number; name: string }
  closeFd(fd: number): void
  createLoop(config: NativeLoopConfig): NativeLoop
  start(loop: NativeLoop): void
  stop(loop: NativeLoop): void
  setPeer(loop: NativeLoop, net: string, prefix: number, addr: string, port: number): void
  delPeer(loop: NativeLoop, net: string, prefix: number): boolean
  counters(loop: NativeLoop): Record<string, number>
  listPeers(loop: NativeLoop): { net: string; prefix: number; addr: string; port: number }[]
}

// src/ and dist/ both sit one level below the package root.
const ADDON_PATH = fileURLToPath(new URL('../build/Release/flannel_udp.node', import.meta.url))

let cached: NativeAddon | undefined

/** Loads the addon once; throws {@link UdpNativeUnavailableError} with build instructions. */
export function loadNative(): NativeAddon {
  if (cached) return cached
  if (process.platform !== 'linux') {
    throw new UdpNativeUnavailableError(ADDON_PATH, {
      cause: new Error(`the udp backend runs on Linux only, not ${process.platform}`),
    })
  }
  try {
    const require = createRequire(import.meta.url)
    cached = require(ADDON_PATH) as NativeAddon
    return cached
  } catch (error) {
    throw new UdpNativeUnavailableError(ADDON_PATH, { cause: error })
  }
}
