/**
 * gce runs the shared backend conformance suite against the local Compute
 * and metadata emulator (the real @google-cloud/compute, REST). It keeps no
 * per-peer entries: what the suite reads for a subnet is the network's route for it.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll } from 'vitest'
import { Ip4Net, parseNetworkConfig } from '@flannel/core'
import { startGceEmulator, type GceEmulator } from '@flannel/testkit/gce'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { gce, routeName } from '@flannel/backend-gce'

// Application Default Credentials as on a VM: the metadata server (the emulator) hands out tokens.
const saved = {
  home: process.env.HOME,
  gac: process.env.GOOGLE_APPLICATION_CREDENTIALS,
  host: process.env.GCE_METADATA_HOST,
}
let home: string
beforeAll(() => {
  home = mkdtempSync(join(tmpdir(), 'flgce-conf-'))
  process.env.HOME = home
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS
})
afterAll(() => {
  for (const [key, value] of [
    ['HOME', saved.home],
    ['GOOGLE_APPLICATION_CREDENTIALS', saved.gac],
    ['GCE_METADATA_HOST', saved.host],
  ] as const) {
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  rmSync(home, { recursive: true, force: true })
})

describeBackendConformance(
  'gce',
  async () => {
    const emu: GceEmulator = await startGceEmulator()
    process.env.GCE_METADATA_HOST = emu.metadataHost
    const peer = emu.addInstance('node-2')
    return {
      factory: gce({ apiEndpoint: emu.url, pollIntervalMs: 1, collectDelayMs: 10 }),
      config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'gce' } }),
      extIface: {
        name: 'eth0',
        index: 2,
        mtu: 1460,
        ifaceAddr: '192.0.2.20',
        extAddr: '192.0.2.20',
      },
      ownSubnet: '10.244.1.0/24',
      peerAttrs: (publicIP) => ({ publicIP }),
      entriesFor: async (subnet) =>
        [...emu.routes.values()]
          .filter((r) => r.destRange === subnet)
          .map((r) => `route ${r.name} ${r.destRange} -> ${r.nextHopInstance ?? r.nextHopGateway}`)
          .sort(),
      plantStale: async (subnet) => {
        emu.addRoute({
          name: routeName(Ip4Net.parse(subnet)),
          destRange: subnet,
          nextHopInstance: peer,
        })
      },
      created: async () => [...emu.routes.keys()].sort(),
      leftovers: () => 0,
      close: () => emu.close(),
    }
  },
  { perPeerState: false },
)
