/**
 * @flannel/backend-vxlan: flannel's vxlan backend on the in-kernel VXLAN
 * device (`flannel.<VNI>`), wire-compatible with flanneld.
 *
 * @packageDocumentation
 */
export { VxlanBackend, createBackend, vxlan, type VxlanOptions } from './backend.js'
export { VxlanNetwork } from './network.js'
export { VxlanDeviceError } from './errors.js'
export { parseVxlanConfig, deviceName, VXLAN_OVERHEAD, type VxlanConfig } from './options.js'
