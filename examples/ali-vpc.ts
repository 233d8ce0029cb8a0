/**
 * ali-vpc backend example: registers this host's subnet in an Alibaba Cloud
 * VPC route table.
 *
 * By default it runs against the local Alibaba API/metadata emulator of
 * @flannel/testkit, so it works anywhere:
 *
 *   pnpm --filter @flannel/examples ali-vpc
 *
 * On a real ECS instance, set ALI_REAL=1 and the credentials
 * (ACCESS_KEY_ID / ACCESS_KEY_SECRET, or Backend.AccessKeyID /
 * Backend.AccessKeySecret in the config); region, instance and VPC then come
 * from the metadata server at 100.100.100.200.
 */
import { EMPTY } from 'rxjs'
import { Ip4Net, parseNetworkConfig, type Lease, type SubnetRegistry } from '@flannel/core'
import { AliVpcBackend, type AliVpcOptions } from '@flannel/backend-ali'
import { startAliEmulator } from '@flannel/testkit/ali'

const real = process.env.ALI_REAL === '1'
const emulator = real ? undefined : await startAliEmulator()

const config = parseNetworkConfig({
  Network: '10.5.0.0/16',
  Backend: {
    Type: 'ali-vpc',
    // AccessKeyID / AccessKeySecret may also be given here; if either is
    // missing, both are read from ACCESS_KEY_ID / ACCESS_KEY_SECRET.
  },
})

const options: AliVpcOptions = {
  // Every option is optional; these are the defaults unless noted.
  apiVersion: '2014-05-26', // the VPC API's 2016-04-28 has the same actions
  pollIntervalMs: real ? 5000 : 10, // between route-table polls while waiting for Available
  availableTimeoutMs: 60_000, // then AliRouteTimeoutError
  requestTimeoutMs: 10_000,
  metadataRetryMs: 5000,
  // routeTableLimit: 50,          // report a full table before changing it
  // regionId / instanceId / vpcId: skip the metadata server
  // accessKeyId / accessKeySecret: take precedence over config and env
  // client: an @alicloud/pop-core RPCClient of your own
  ...(emulator && {
    apiEndpoint: emulator.endpoint, // default: env ECS_ENDPOINT, else https://ecs-cn-hangzhou.aliyuncs.com
    metadataEndpoint: emulator.metadataEndpoint, // default: env METADATA_ENDPOINT, else http://100.100.100.200
    env: { ACCESS_KEY_ID: emulator.accessKeyId, ACCESS_KEY_SECRET: emulator.accessKeySecret },
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

const backend = new AliVpcBackend(
  { registry, extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '192.0.2.11' } },
  options,
)

try {
  const network = await backend.registerNetwork(config, { signal: AbortSignal.timeout(120_000) })
  console.log(`lease ${network.lease.subnet.toString()}, MTU ${network.mtu}`)
  if (emulator) {
    for (const entry of emulator.routeEntries()) {
      console.log(
        `${entry.Type.padEnd(6)} ${entry.DestinationCidrBlock.padEnd(16)} -> ${entry.NextHopId || entry.NextHopType} (${entry.Status})`,
      )
    }
  }
} finally {
  await emulator?.close()
}
