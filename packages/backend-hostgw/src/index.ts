/**
 * @flannel/backend-hostgw: flannel's host-gw backend. Routes every peer's
 * subnet via the peer's PublicIP on the external interface.
 *
 * @packageDocumentation
 */
export { HostGwBackend, createBackend, hostGw, type HostGwOptions } from './backend.js'
export { PublicIpNotLocalError } from './errors.js'
