import { formatIp4, type Ip4Net } from '@flannel/core'
import { UdpDatapathError } from './errors.js'
import { NATIVE_MODE, loadNative, type NativeAddon, type NativeLoop } from './native.js'

/**
 * How the forwarding loop moves packets.
 * - `single`: one thread, one packet per system call (flanneld's C loop).
 * - `batch`: one thread per direction, `recvmmsg`/`sendmmsg` batches.
 * - `offload`: `batch` plus TUN offloads (TCP super-packets segmented in C,
 *   UDP GSO/GRO); falls back to `batch` where the kernel refuses them.
 */
export type UdpLoopMode = 'single' | 'batch' | 'offload'

/**
 * Datapath counters, totals since the loop started. Drops are counted, never
 * logged per packet.
 */
export interface UdpCounters {
  /** Datagrams sent to peers. */
  readonly txPackets: number
  /** Bytes sent to peers (UDP payload). */
  readonly txBytes: number
  /** Datagrams accepted from peers and written to the TUN. */
  readonly rxPackets: number
  /** Bytes accepted from peers. */
  readonly rxBytes: number
  /** Datagrams dropped because the sender is not a peer's PublicIP:port. */
  readonly dropUnknownPeer: number
  /** Datagrams dropped because the inner source is outside the sending peer's subnet. */
  readonly dropSpoofedSource: number
  /** Packets dropped because their TTL ran out. */
  readonly dropTtl: number
  /**
   * Packets shorter than an IPv4 header or not IPv4; with `verifySource`, also
   * datagrams whose IPv4 header does not hold up (IHL below 5 or beyond the
   * datagram, total length outside header..datagram); in offload mode, also
   * TUN super-packets that cannot be cut (headers inconsistent, fragments).
   */
  readonly dropMalformed: number
  /** Datagrams larger than the TUN MTU. */
  readonly dropTruncated: number
  /** Packets to unknown destinations that got no ICMP reply (ICMP, fragments, long or malformed headers). */
  readonly dropNoRoute: number
  /** ICMP net-unreachable replies written to the TUN. */
  readonly icmpUnreachableSent: number
  /** Datagrams the kernel refused to send. */
  readonly sendErrors: number
  /** Packets the TUN refused. */
  readonly tunWriteErrors: number
  /** Reads from the TUN (super-packets count once). */
  readonly tunReads: number
  /** TCP super-packets segmented (offload mode). */
  readonly superPackets: number
  /** Send system calls. */
  readonly udpSendCalls: number
  /** Receive system calls. */
  readonly udpRecvCalls: number
  /** Entries in the peer table. */
  readonly peers: number
}

/** One entry of the native peer table: packets for `subnet` go to `publicIP:port`. */
export interface UdpPeer {
  /** The peer's subnet, e.g. `10.5.2.0/24`. */
  readonly subnet: string
  /** Where its packets are sent. */
  readonly publicIP: string
  /** The UDP port they are sent to. */
  readonly port: number
}

/** What {@link UdpDatapath.open} needs. */
export interface UdpDatapathOptions {
  /** Device name or template (`flannel%d`). */
  readonly device: string
  /** Local address the UDP socket binds to (the interface address). */
  readonly bindAddr: string
  /** UDP port, bound locally and used for every peer. */
  readonly port: number
  /** The TUN's address (source of ICMP replies). */
  readonly tunAddr: string
  /** TUN MTU. */
  readonly mtu: number
  /** Loop mode. */
  readonly mode: UdpLoopMode
  /** Packets per batch (batch and offload modes). */
  readonly batchSize: number
  /** Drop datagrams from non-peers and spoofed inner sources. */
  readonly verifySource: boolean
}

/**
 * The native datapath: the TUN device, the UDP socket and the forwarding
 * thread(s). The device exists while this object is open and disappears on
 * {@link UdpDatapath.close}.
 */
export class UdpDatapath {
  /** The TUN device's name as the kernel gave it. */
  readonly device: string
  /** The mode actually running (offload may fall back to batch). */
  readonly mode: UdpLoopMode
  private readonly native: NativeAddon
  private readonly loop: NativeLoop
  private readonly port: number
  private started = false
  private closed = false

  private constructor(
    native: NativeAddon,
    loop: NativeLoop,
    device: string,
    mode: UdpLoopMode,
    port: number,
  ) {
    this.native = native
    this.loop = loop
    this.device = device
    this.mode = mode
    this.port = port
  }

  /** Creates the TUN device and binds the socket; the loop is not running yet. */
  static open(options: UdpDatapathOptions): UdpDatapath {
    const native = loadNative()
    let mode = options.mode
    let tun: { fd: number; name: string }
    try {
      tun = native.openTun(options.device, mode === 'offload')
    } catch (error) {
      if (mode !== 'offload') throw wrap(`open TUN ${options.device}`, error)
      mode = 'batch'
      try {
        tun = native.openTun(options.device, false)
      } catch (again) {
        throw wrap(`open TUN ${options.device}`, again)
      }
    }
    try {
      const loop = native.createLoop({
        tunFd: tun.fd,
        bindAddr: options.bindAddr,
        port: options.port,
        tunAddr: options.tunAddr,
        mtu: options.mtu,
        mode: NATIVE_MODE[mode],
        batch: options.batchSize,
        verifySource: options.verifySource,
        vnetHdr: mode === 'offload',
      })
      return new UdpDatapath(native, loop, tun.name, mode, options.port)
    } catch (error) {
      // createLoop owns (and closed) the fd from its first line on.
      throw wrap(`create UDP loop on ${options.bindAddr}:${options.port}`, error)
    }
  }

  /** Starts the forwarding thread(s). */
  start(): void {
    if (this.closed) throw new UdpDatapathError('start', undefined, 'the datapath is closed')
    if (this.started) return
    this.native.start(this.loop)
    this.started = true
  }

  /** Routes `subnet` to `publicIP` (the peer table is updated while the loop runs). */
  setPeer(subnet: Ip4Net, publicIP: string): void {
    this.native.setPeer(this.loop, formatIp4(subnet.ip), subnet.prefixLength, publicIP, this.port)
  }

  /** Removes the route of `subnet`; false when there was none. */
  deletePeer(subnet: Ip4Net): boolean {
    return this.native.delPeer(this.loop, formatIp4(subnet.ip), subnet.prefixLength)
  }

  /** The peer table as the forwarding loop reads it, longest prefix first (read back from the addon). */
  peers(): UdpPeer[] {
    if (this.closed) return [] // a closed datapath routes nothing
    return this.native
      .listPeers(this.loop)
      .map((p) => ({ subnet: `${p.net}/${p.prefix}`, publicIP: p.addr, port: p.port }))
  }

  /** Current counters. */
  counters(): UdpCounters {
    return this.native.counters(this.loop) as unknown as UdpCounters
  }

  /** Stops and joins the thread(s), closes the socket and the TUN (the device goes away). Idempotent. */
  close(): void {
    if (this.closed) return
    this.closed = true
    this.native.stop(this.loop)
  }
}

function wrap(step: string, error: unknown): UdpDatapathError {
  const e = error as { code?: unknown; message?: unknown }
  const errno = typeof e?.code === 'string' ? e.code : undefined
  const message = typeof e?.message === 'string' ? e.message : String(error)
  return new UdpDatapathError(step, errno, message, { cause: error })
}
