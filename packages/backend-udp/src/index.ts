/**
 * @flannel/backend-udp: flannel's udp backend (TUN + UDP encapsulation,
 * wire-compatible with flanneld), with a native forwarding loop.
 */
export {
  UdpBackend,
  createBackend,
  udp,
  DEFAULT_UDP_PORT,
  UDP_OVERHEAD,
  type UdpBackendOptions,
} from './backend.js'
export { UdpNetwork } from './network.js'
export {
  UdpDatapath,
  type UdpCounters,
  type UdpDatapathOptions,
  type UdpLoopMode,
  type UdpPeer,
} from './datapath.js'
export { UdpDatapathError, UdpNativeUnavailableError } from './errors.js'
