/**
 * ali-vpc runs the shared backend conformance suite against the local
 * Alibaba ECS/VPC RPC emulator (the real @alicloud/pop-core, signed
 * requests). It keeps no per-peer entries: what the suite reads for a subnet
 * is the VPC route table's custom entry for it.
 */
import { parseNetworkConfig } from '@flannel/core'
import { startAliEmulator } from '@flannel/testkit/ali'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { aliVpc } from '@flannel/backend-ali'

describeBackendConformance(
  'ali-vpc',
  async () => {
    const emu = await startAliEmulator()
    const custom = () => emu.routeEntries().filter((r) => r.Type === 'Custom')
    return {
      factory: aliVpc({
        apiEndpoint: emu.endpoint,
        metadataEndpoint: emu.metadataEndpoint,
        env: { ACCESS_KEY_ID: emu.accessKeyId, ACCESS_KEY_SECRET: emu.accessKeySecret },
        pollIntervalMs: 1,
      }),
      config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'ali-vpc' } }),
      extIface: {
        name: 'eth0',
        index: 2,
        mtu: 1500,
        ifaceAddr: '192.0.2.11',
        extAddr: '192.0.2.11',
      },
      ownSubnet: '10.244.1.0/24',
      peerAttrs: (publicIP) => ({ publicIP }),
      entriesFor: async (subnet) =>
        custom()
          .filter((r) => r.DestinationCidrBlock === subnet)
          .map((r) => `route ${r.DestinationCidrBlock} > ${r.NextHopId}`)
          .sort(),
      plantStale: async () => undefined, // not called: no per-peer state
      created: async () =>
        custom()
          .map((r) => `${r.DestinationCidrBlock} > ${r.NextHopId}`)
          .sort(),
      leftovers: () => 0,
      close: () => emu.close(),
    }
  },
  { perPeerState: false },
)
