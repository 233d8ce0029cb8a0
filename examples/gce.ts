/**
 * gce backend example: adds a route for this host's subnet, with this
 * instance as next hop, to the VPC network.
 *
 * By default it runs against the local Compute REST and metadata endpoint of
 * @flannel/testkit, so it works anywhere:
 *
 *   pnpm --filter @flannel/examples gce
 *
 * On a real GCE instance (created with --can-ip-forward and the compute-rw
 * scope), set GCE_REAL=1: project, zone, instance and network come from the
 * metadata server, credentials from Application Default Credentials.
 */
import { EMPTY } from 'rxjs'
import { Ip4Net, parseNetworkConfig, type Lease, type SubnetRegistry } from '@flannel/core'
import { GceBackend, type GceOptions } from '@flannel/backend-gce'
import { startGceEmulator } from '@flannel/testkit/gce'

const real = process.env.GCE_REAL === '1'
const emulator = real ? undefined : await startGceEmulator()
// Application Default Credentials on a VM ask the metadata server for the
// service account's token; Google's libraries find it through GCE_METADATA_HOST.
if (emulator) process.env.GCE_METADATA_HOST = emulator.metadataHost

const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'gce' } })

const options: GceOptions = {
  // Every option is optional; these are the defaults unless noted.
  operationTimeoutMs: 100_000, // then GceOperationTimeoutError
  pollIntervalMs: real ? 1000 : 10, // between polls of a running operation
  metadataTimeoutMs: 5000,
  collectStaleRoutes: true, // network.run() removes flannel- routes of leases that are gone
  collectDelayMs: 5000, // after a lease change, before collecting (leases arriving meanwhile count as live)
  // project / zone / instanceName / network: skip the metadata server
  // authClient: a google-auth-library client of your own (default: ADC)
  // clientOptions: more options for the SDK clients (e.g. keyFilename)
  ...(emulator && { apiEndpoint: emulator.url }), // plain HTTP to the local endpoint
}

// A one-lease registry keeps the example self-contained; an agent passes its
// real registry (in memory or etcd) here.
const registry: SubnetRegistry = {
  getNetworkConfig: async () => config,
  acquireLease: async (attrs): Promise<Lease> => ({
    subnet: Ip4Net.parse('10.5.34.0/24'),
    attrs,
    expiration: new Date(Date.now() + 86_400_000),
  }),
  renewLease: async (lease) => lease,
  releaseLease: async () => {},
  watchLeases: () => EMPTY,
  close: async () => {},
}

const backend = new GceBackend(
  { registry, extIface: { name: 'eth0', index: 2, mtu: 1460, ifaceAddr: '192.0.2.20' } },
  options,
)

try {
  const network = await backend.registerNetwork(config, { signal: AbortSignal.timeout(120_000) })
  console.log(`lease ${network.lease.subnet.toString()}, MTU ${network.mtu}`)
  for (const route of emulator?.routes.values() ?? []) {
    console.log(
      `${route.name}: ${route.destRange} -> ${route.nextHopInstance} (priority ${route.priority})`,
    )
  }
} finally {
  await emulator?.close()
}
