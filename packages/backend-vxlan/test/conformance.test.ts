/** vxlan runs the shared backend conformance suite on the in-memory HostNetwork. */
import { parseNetworkConfig } from '@flannel/core'
import { FLANNEL_ROUTE_PROTOCOL } from '@flannel/linux'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { vxlan } from '../src/index.js'

const MACS = ['0a:00:00:00:00:01', '0a:00:00:00:00:02']

describeBackendConformance('vxlan', async () => {
  const host = new MemoryHostNetwork({ links: [{ name: 'eth0', mtu: 1500 }] })
  const eth = (await host.getLink('eth0'))!
  await host.addAddress({
    linkIndex: eth.index,
    family: 'inet',
    address: '192.0.2.1',
    prefixLength: 24,
  })
  const device = async () => (await host.getLink('flannel.1'))!
  const gatewayOf = (subnet: string) => subnet.split('/')[0]!
  return {
    factory: vxlan({
      host,
      procSys: false,
      checkIntervalMs: 600_000,
      repairDelayMs: 1,
      retryBaseMs: 1,
    }),
    config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'vxlan' } }),
    extIface: {
      name: 'eth0',
      index: eth.index,
      mtu: 1500,
      ifaceAddr: '192.0.2.1',
      extAddr: '192.0.2.1',
    },
    ownSubnet: '10.244.1.0/24',
    peerAttrs: (publicIP, variant) => ({
      publicIP,
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: MACS[variant % MACS.length] },
    }),
    entriesFor: async (subnet) => {
      const dev = await host.getLink('flannel.1')
      if (dev === undefined) return []
      const gw = gatewayOf(subnet)
      const routes = (await host.listRoutes({ linkIndex: dev.index }))
        .filter((r) => r.dst === subnet && r.protocol !== 2)
        .map((r) => `route ${r.dst} via ${r.gateway}`)
      const neigh = (await host.listNeighbours({ linkIndex: dev.index })).filter((n) => n.ip === gw)
      const macs = new Set(neigh.map((n) => n.mac))
      const fdb = (await host.listFdb({ linkIndex: dev.index }))
        .filter((e) => macs.has(e.mac))
        .map((e) => `fdb ${e.mac} dst ${e.dst}`)
      return [...routes, ...neigh.map((n) => `neigh ${n.ip} ${n.mac}`), ...fdb].sort()
    },
    plantStale: async (subnet) => {
      const dev = await device()
      const gw = gatewayOf(subnet)
      await host.replaceNeighbour({ linkIndex: dev.index, ip: gw, mac: '0a:00:00:00:00:99' })
      await host.appendFdb({ linkIndex: dev.index, mac: '0a:00:00:00:00:99', dst: '192.0.2.99' })
      await host.addRoute({
        family: 'inet',
        dst: subnet,
        gateway: gw,
        linkIndex: dev.index,
        onlink: true,
        protocol: FLANNEL_ROUTE_PROTOCOL,
      })
    },
    created: async () => (await host.listLinks()).map((l) => l.name).sort(),
    leftovers: () => host.subscriberCount,
    close: () => host.close(),
  }
})
