/**
 * aws-vpc runs the shared backend conformance suite against moto's EC2
 * server (the real @aws-sdk/client-ec2). It keeps no per-peer entries: what
 * the suite reads for a subnet is the VPC route for it.
 */
import * as sdk from '@aws-sdk/client-ec2'
import { afterAll, beforeAll, describe } from 'vitest'
import { parseNetworkConfig } from '@flannel/core'
import {
  motoUnavailableReason,
  startImds,
  startMoto,
  type Imds,
  type MotoServer,
} from '@flannel/testkit/aws'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { awsVpc } from '@flannel/backend-aws'

const skipReason = motoUnavailableReason()
const REGION = 'us-east-1'
const IFACE_ADDR = '198.51.100.10'
const CREDS = {
  accessKeyId: 'AKIDFLANNELTEST',
  secretAccessKey: 'flannel-test-secret-never-logged',
}

describe.skipIf(skipReason !== undefined)(
  `aws-vpc conformance on moto${skipReason ? ` [skipped: ${skipReason}]` : ''}`,
  () => {
    let moto: MotoServer
    let ec2: sdk.EC2Client
    const imdsOpen: Imds[] = []
    beforeAll(async () => {
      moto = await startMoto()
      ec2 = new sdk.EC2Client({ endpoint: moto.endpoint, region: REGION, credentials: CREDS })
    })
    afterAll(async () => {
      ec2?.destroy()
      await moto?.close()
    })

    describeBackendConformance(
      'aws-vpc',
      async () => {
        await moto.reset()
        const vpc = await ec2.send(new sdk.CreateVpcCommand({ CidrBlock: '198.51.100.0/24' }))
        const vpcId = vpc.Vpc?.VpcId as string
        const sn = await ec2.send(
          new sdk.CreateSubnetCommand({
            VpcId: vpcId,
            CidrBlock: '198.51.100.0/26',
            AvailabilityZone: `${REGION}a`,
          }),
        )
        const subnetId = sn.Subnet?.SubnetId as string
        const run = await ec2.send(
          new sdk.RunInstancesCommand({
            ImageId: 'ami-12c6146b',
            MinCount: 1,
            MaxCount: 1,
            SubnetId: subnetId,
            PrivateIpAddress: IFACE_ADDR,
          }),
        )
        const instanceId = run.Instances?.[0]?.InstanceId as string
        const other = await ec2.send(new sdk.CreateNetworkInterfaceCommand({ SubnetId: subnetId }))
        const otherEni = other.NetworkInterface?.NetworkInterfaceId as string
        const tables = await ec2.send(
          new sdk.DescribeRouteTablesCommand({
            Filters: [
              { Name: 'association.main', Values: ['true'] },
              { Name: 'vpc-id', Values: [vpcId] },
            ],
          }),
        )
        const table = tables.RouteTables?.[0]?.RouteTableId as string
        const imds = await startImds({ availabilityZone: `${REGION}a`, instanceId })
        imdsOpen.push(imds)
        const routes = async (): Promise<sdk.Route[]> =>
          (
            (await ec2.send(new sdk.DescribeRouteTablesCommand({ RouteTableIds: [table] })))
              .RouteTables?.[0]?.Routes ?? []
          ).filter((r) => r.Origin === 'CreateRoute')
        return {
          factory: awsVpc({
            endpoint: moto.endpoint,
            metadataEndpoint: imds.endpoint,
            env: {
              AWS_ACCESS_KEY_ID: CREDS.accessKeyId,
              AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey,
            },
            collectDelayMs: 10,
          }),
          config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'aws-vpc' } }),
          extIface: {
            name: 'eth0',
            index: 2,
            mtu: 9001,
            ifaceAddr: IFACE_ADDR,
            extAddr: IFACE_ADDR,
          },
          ownSubnet: '10.244.1.0/24',
          peerAttrs: (publicIP) => ({ publicIP }),
          entriesFor: async (subnet) =>
            (await routes())
              .filter((r) => r.DestinationCidrBlock === subnet)
              .map(
                (r) => `route ${r.DestinationCidrBlock} > ${r.NetworkInterfaceId ?? r.InstanceId}`,
              )
              .sort(),
          plantStale: async (subnet) => {
            await ec2.send(
              new sdk.CreateRouteCommand({
                RouteTableId: table,
                DestinationCidrBlock: subnet,
                NetworkInterfaceId: otherEni,
              }),
            )
          },
          created: async () => (await routes()).map((r) => `${r.DestinationCidrBlock}`).sort(),
          leftovers: () => 0,
          close: async () => {
            for (const i of imdsOpen.splice(0)) await i.close()
          },
        }
      },
      { perPeerState: false },
    )
  },
)
