/** host-gw runs the shared backend conformance suite on the in-memory HostNetwork. */
import { parseNetworkConfig } from '@flannel/core'
import { FLANNEL_ROUTE_PROTOCOL } from '@flannel/linux'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { hostGw } from '../src/index.js'

describeBackendConformance('host-gw', async () => {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0', mtu: 1500 }] })
  const eth = (await host.getLink('eth0'))!
  await host.addAddress({
    linkIndex: eth.index,
    family: 'inet',
    address: '192.0.2.1',
    prefixLength: 24,
  })
  const routes = async (subnet: string): Promise<string[]> =>
    (await host.listRoutes({ family: 'inet' }))
      .filter((r) => r.dst === subnet && r.protocol === FLANNEL_ROUTE_PROTOCOL)
      .map((r) => `route ${r.dst} via ${r.gateway ?? '-'} dev ${r.linkIndex ?? '-'}`)
      .sort()
  return {
    factory: hostGw({ host, checkIntervalMs: 600_000, repairDelayMs: 1 }),
    config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'host-gw' } }),
    extIface: {
      name: 'eth0',
      index: eth.index,
      mtu: 1500,
      ifaceAddr: '192.0.2.1',
      extAddr: '192.0.2.1',
    },
    ownSubnet: '10.244.1.0/24',
    peerAttrs: (publicIP) => ({ publicIP, backendType: 'host-gw' }),
    entriesFor: routes,
    plantStale: (subnet) =>
      host.addRoute({
        family: 'inet',
        dst: subnet,
        gateway: '192.0.2.99',
        linkIndex: eth.index,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      }),
    created: async () => (await host.listLinks()).map((l) => l.name).sort(),
    leftovers: () => host.subscriberCount,
    close: () => host.close(),
  }
})
