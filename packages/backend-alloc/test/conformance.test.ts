/** alloc runs the shared backend conformance suite; it keeps no per-peer state. */
import { parseNetworkConfig } from '@flannel/core'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { alloc } from '../src/index.js'

describeBackendConformance(
  'alloc',
  async () => ({
    factory: alloc(),
    config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'alloc' } }),
    extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.1', extAddr: '192.0.2.1' },
    ownSubnet: '10.244.1.0/24',
    peerAttrs: (publicIP) => ({ publicIP }),
    entriesFor: async () => [],
    plantStale: async () => undefined,
    created: async () => [],
    leftovers: () => 0,
    close: async () => undefined,
  }),
  { perPeerState: false },
)
