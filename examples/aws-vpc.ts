/**
 * aws-vpc backend example: routes this host's subnet in the VPC route table
 * to the instance's network interface.
 *
 * By default it runs against moto's EC2 server and the IMDSv2 endpoint of
 * @flannel/testkit (moto is installed by scripts/setup.sh), so it works
 * anywhere:
 *
 *   pnpm --filter @flannel/examples aws-vpc
 *
 * On a real EC2 instance, set AWS_REAL=1: region and instance id come from
 * the instance metadata service, credentials from the SDK's default chain
 * (environment, shared config, instance role).
 */
import { EMPTY } from 'rxjs'
import { Ip4Net, parseNetworkConfig, type Lease, type SubnetRegistry } from '@flannel/core'
import { AwsVpcBackend, type AwsVpcOptions } from '@flannel/backend-aws'
import {
  listRoutes,
  motoUnavailableReason,
  seedEc2,
  startImds,
  startMoto,
} from '@flannel/testkit/aws'

const real = process.env.AWS_REAL === '1'
if (!real && motoUnavailableReason() !== undefined) {
  console.log(`skipped: ${motoUnavailableReason()}`)
  process.exit(0)
}
const moto = real ? undefined : await startMoto()
const world = moto && (await seedEc2(moto, { privateIp: '198.51.100.10' }))
const imds =
  world &&
  (await startImds({ availabilityZone: world.availabilityZone, instanceId: world.instanceId }))

const config = parseNetworkConfig({
  Network: '10.5.0.0/16',
  Backend: {
    Type: 'aws-vpc',
    // RouteTableID: 'rtb-0123456789abcdef0',         // one table, or
    // RouteTableID: ['rtb-0123...', 'rtb-0456...'],  // several (e.g. one per AZ);
    // absent: the subnet's table, else the VPC's main table.
  },
})

const options: AwsVpcOptions = {
  // Every option is optional; these are the defaults unless noted.
  maxAttempts: 5, // per EC2 call; the SDK backs off on throttling
  metadataTimeoutMs: 2000,
  collectStaleRoutes: true, // network.run() removes routes of leases that are gone
  collectDelayMs: 5000, // after a lease change, before collecting (leases arriving meanwhile count as live)
  // region / instanceId: skip the metadata service
  // routeTableIds: take precedence over Backend.RouteTableID
  // credentials: a credential provider of your own (default: the SDK chain)
  // client: an EC2Client of your own
  ...(moto &&
    imds && {
      endpoint: moto.endpoint, // default: the SDK's regional endpoint
      metadataEndpoint: imds.endpoint, // default: http://169.254.169.254
      env: { AWS_ACCESS_KEY_ID: 'testing', AWS_SECRET_ACCESS_KEY: 'testing' },
    }),
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

const ifaceAddr = world?.privateIp ?? process.env.AWS_IFACE_ADDR ?? '198.51.100.10'
const backend = new AwsVpcBackend(
  { registry, extIface: { name: 'eth0', index: 2, mtu: 9001, ifaceAddr } },
  options,
)

try {
  const network = await backend.registerNetwork(config, { signal: AbortSignal.timeout(60_000) })
  console.log(`lease ${network.lease.subnet.toString()}, MTU ${network.mtu}`)
  if (moto && world) {
    for (const line of await listRoutes(moto, world.mainRouteTableId)) {
      console.log(`${world.mainRouteTableId}: ${line}`)
    }
  }
} finally {
  await imds?.close()
  await moto?.close()
}
