import * as sdk from '@aws-sdk/client-ec2'
import { EMPTY, Subject } from 'rxjs'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  Ip4Net,
  RouteLimitError,
  isFlannelError,
  parseNetworkConfig,
  type BackendContext,
  type Lease,
  type LeaseAttrs,
  type LeaseEvent,
  type Logger,
  type NetworkConfig,
  type NetworkEvent,
  type SubnetRegistry,
} from '@flannel/core'
import {
  motoUnavailableReason,
  startEc2Proxy,
  startImds,
  startMoto,
  type Ec2Proxy,
  type Imds,
  type MotoServer,
} from '@flannel/testkit/aws'
import {
  AwsAuthError,
  AwsDiscoveryError,
  AwsMetadataError,
  AwsVpcBackend,
  type AwsVpcOptions,
} from '@flannel/backend-aws'

const skipReason = motoUnavailableReason()
if (skipReason !== undefined) console.warn(`aws-vpc integration tests skipped: ${skipReason}`)

const REGION = 'us-east-1'
const OWN = '10.5.34.0/24'
const IFACE_ADDR = '198.51.100.10'
const CREDS = {
  accessKeyId: 'AKIDFLANNELTEST',
  secretAccessKey: 'flannel-test-secret-never-logged',
}

const cfg = (backend: Record<string, unknown> = {}): NetworkConfig =>
  parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'aws-vpc', ...backend } })

function lease(subnet: string): Lease {
  return {
    subnet: Ip4Net.parse(subnet),
    attrs: { publicIP: '198.51.100.99' },
    expiration: new Date(Date.now() + 86_400_000),
  }
}

/** A registry that hands out one fixed lease and records what happened. */
function fixedRegistry(subnet = OWN) {
  const acquired: LeaseAttrs[] = []
  const released: Lease[] = []
  const registry: SubnetRegistry = {
    getNetworkConfig: async () => cfg(),
    acquireLease: async (attrs) => {
      acquired.push(attrs)
      return { ...lease(subnet), attrs }
    },
    renewLease: async (l) => l,
    releaseLease: async (l) => {
      released.push(l)
    },
    watchLeases: () => EMPTY,
    close: async () => {},
  }
  return { registry, acquired, released }
}

function recordingLogger(entries: unknown[] = []): Logger & { entries: unknown[] } {
  const make = (bindings: Record<string, unknown>): Logger & { entries: unknown[] } => {
    const log =
      (level: string) =>
      (objOrMsg: object | string, msg?: string): void => {
        entries.push({ level, bindings, obj: objOrMsg, msg })
      }
    return {
      entries,
      trace: log('trace'),
      debug: log('debug'),
      info: log('info'),
      warn: log('warn'),
      error: log('error'),
      child: (more) => make({ ...bindings, ...more }),
    }
  }
  return make({})
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  try {
    await p
  } catch (err) {
    return err
  }
  throw new Error('expected a rejection')
}

interface World {
  vpcId: string
  subnetId: string
  instanceId: string
  eni: string
  otherEni: string
  mainTable: string
}

describe.skipIf(skipReason !== undefined)(
  `AwsVpcBackend against moto's EC2 server (real @aws-sdk/client-ec2)${skipReason ? ` [skipped: ${skipReason}]` : ''}`,
  () => {
    let moto: MotoServer
    let proxy: Ec2Proxy
    let imds: Imds
    let ec2: sdk.EC2Client
    let w: World

    beforeAll(async () => {
      moto = await startMoto()
      proxy = await startEc2Proxy(moto)
      // Test fixtures go straight to moto, so the proxy records only the backend's calls.
      ec2 = new sdk.EC2Client({ endpoint: moto.endpoint, region: REGION, credentials: CREDS })
    })
    afterAll(async () => {
      ec2?.destroy()
      await proxy?.close()
      await moto?.close()
    })

    beforeEach(async () => {
      await moto.reset()
      proxy.calls.length = 0
      proxy.options.routeLimit = undefined
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
      const instance = run.Instances?.[0]
      const other = await ec2.send(new sdk.CreateNetworkInterfaceCommand({ SubnetId: subnetId }))
      const tables = await ec2.send(
        new sdk.DescribeRouteTablesCommand({
          Filters: [
            { Name: 'association.main', Values: ['true'] },
            { Name: 'vpc-id', Values: [vpcId] },
          ],
        }),
      )
      w = {
        vpcId,
        subnetId,
        instanceId: instance?.InstanceId as string,
        eni: instance?.NetworkInterfaces?.[0]?.NetworkInterfaceId as string,
        otherEni: other.NetworkInterface?.NetworkInterfaceId as string,
        mainTable: tables.RouteTables?.[0]?.RouteTableId as string,
      }
      imds = await startImds({ availabilityZone: `${REGION}a`, instanceId: w.instanceId })
    })
    afterEach(async () => {
      await imds?.close()
    })

    function setup(options: AwsVpcOptions = {}, subnet = OWN) {
      const reg = fixedRegistry(subnet)
      const logger = recordingLogger()
      const ctx: BackendContext = {
        registry: reg.registry,
        extIface: { name: 'eth0', index: 2, mtu: 9001, ifaceAddr: IFACE_ADDR, extAddr: IFACE_ADDR },
        logger,
      }
      const backend = new AwsVpcBackend(ctx, {
        endpoint: proxy.endpoint,
        metadataEndpoint: imds.endpoint,
        env: { AWS_ACCESS_KEY_ID: CREDS.accessKeyId, AWS_SECRET_ACCESS_KEY: CREDS.secretAccessKey },
        ...options,
      })
      return { backend, logger, ...reg }
    }

    async function routes(table: string): Promise<string[]> {
      const out = await ec2.send(new sdk.DescribeRouteTablesCommand({ RouteTableIds: [table] }))
      return (out.RouteTables?.[0]?.Routes ?? [])
        .filter((r) => r.Origin === 'CreateRoute')
        .map(
          (r) => `${r.DestinationCidrBlock}>${r.NetworkInterfaceId ?? r.InstanceId ?? r.GatewayId}`,
        )
        .sort()
    }
    async function newTable(associate: boolean): Promise<string> {
      const t = await ec2.send(new sdk.CreateRouteTableCommand({ VpcId: w.vpcId }))
      const id = t.RouteTable?.RouteTableId as string
      if (associate) {
        await ec2.send(
          new sdk.AssociateRouteTableCommand({ RouteTableId: id, SubnetId: w.subnetId }),
        )
      }
      return id
    }
    async function sourceDestCheck(): Promise<boolean | undefined> {
      const out = await ec2.send(
        new sdk.DescribeNetworkInterfacesCommand({ NetworkInterfaceIds: [w.eni] }),
      )
      return out.NetworkInterfaces?.[0]?.SourceDestCheck
    }
    async function addRoute(
      table: string,
      cidr: string,
      target: { NetworkInterfaceId?: string; InstanceId?: string },
    ) {
      await ec2.send(
        new sdk.CreateRouteCommand({ RouteTableId: table, DestinationCidrBlock: cidr, ...target }),
      )
    }
    const mutations = () =>
      proxy.calls.map((c) => c.action).filter((a) => !a.startsWith('Describe'))

    it('reads IMDSv2 (token first), uses the table associated with the subnet, disables SourceDestCheck and creates the route', async () => {
      const table = await newTable(true)
      const { backend, acquired, logger } = setup()
      expect(await sourceDestCheck()).toBe(true)
      const network = await backend.registerNetwork(cfg())

      expect(
        imds.requests.map((r) => `${r.method} ${r.path} ${r.token ? 'token' : 'no-token'}`),
      ).toEqual([
        'PUT /latest/api/token no-token',
        'GET /latest/meta-data/placement/availability-zone token',
        'GET /latest/meta-data/instance-id token',
      ])
      expect(acquired).toEqual([{ publicIP: IFACE_ADDR }])
      expect(network.lease.subnet.toString()).toBe(OWN)
      expect(network.mtu).toBe(9001)
      expect(await routes(table)).toEqual([`${OWN}>${w.eni}`])
      expect(await routes(w.mainTable)).toEqual([])
      expect(await sourceDestCheck()).toBe(false)
      const describeTables = proxy.calls.find((c) => c.action === 'DescribeRouteTables')
      expect(describeTables?.params).toMatchObject({
        'Filter.1.Name': 'association.subnet-id',
        'Filter.1.Value.1': w.subnetId,
      })
      expect(proxy.calls.find((c) => c.action === 'DescribeInstances')?.params).toMatchObject({
        'InstanceId.1': w.instanceId,
      })
      expect(mutations()).toEqual(['ModifyNetworkInterfaceAttribute', 'CreateRoute'])
      expect(proxy.calls.find((c) => c.action === 'CreateRoute')?.params).toMatchObject({
        RouteTableId: table,
        DestinationCidrBlock: OWN,
        NetworkInterfaceId: w.eni,
      })
      // Credentials are never logged.
      expect(JSON.stringify(logger.entries)).not.toContain(CREDS.secretAccessKey)
      expect(JSON.stringify(logger.entries)).toContain(w.eni)
    })

    it("falls back to the VPC's main route table when the subnet has no association", async () => {
      const { backend } = setup()
      await backend.registerNetwork(cfg())
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
      const filters = proxy.calls
        .filter((c) => c.action === 'DescribeRouteTables')
        .map((c) => c.params)
      expect(filters[1]).toMatchObject({
        'Filter.1.Name': 'association.main',
        'Filter.1.Value.1': 'true',
        'Filter.2.Name': 'vpc-id',
        'Filter.2.Value.1': w.vpcId,
      })
    })

    it('uses RouteTableID given as a string, without detection', async () => {
      await newTable(true) // would be detected; must not be used
      const explicit = await newTable(false)
      const { backend } = setup()
      await backend.registerNetwork(cfg({ routeTableId: explicit }))
      expect(await routes(explicit)).toEqual([`${OWN}>${w.eni}`])
      expect(proxy.calls.some((c) => c.params['Filter.1.Name'] === 'association.subnet-id')).toBe(
        false,
      )
    })

    it('uses every table of a RouteTableID array', async () => {
      const a = await newTable(false)
      const b = await newTable(false)
      const { backend } = setup()
      await backend.registerNetwork(cfg({ RouteTableID: [a, b] }))
      expect(await routes(a)).toEqual([`${OWN}>${w.eni}`])
      expect(await routes(b)).toEqual([`${OWN}>${w.eni}`])
      expect(await routes(w.mainTable)).toEqual([])
    })

    it('changes nothing on a restart when the route is right', async () => {
      await setup().backend.registerNetwork(cfg())
      proxy.calls.length = 0
      const again = setup()
      await again.backend.registerNetwork(cfg())
      expect(mutations()).toEqual([])
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
      expect(again.acquired).toHaveLength(1)
    })

    it('replaces (never deletes and recreates) a route that points at another ENI', async () => {
      await addRoute(w.mainTable, OWN, { NetworkInterfaceId: w.otherEni })
      await setup().backend.registerNetwork(cfg())
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
      expect(mutations()).toEqual(['ModifyNetworkInterfaceAttribute', 'ReplaceRoute'])
    })

    it('deletes blackhole routes inside Network and leaves those outside', async () => {
      const gone = await ec2.send(new sdk.CreateNetworkInterfaceCommand({ SubnetId: w.subnetId }))
      const goneId = gone.NetworkInterface?.NetworkInterfaceId as string
      await addRoute(w.mainTable, '10.5.9.0/24', { NetworkInterfaceId: goneId })
      await addRoute(w.mainTable, '192.0.2.0/24', { NetworkInterfaceId: goneId })
      await addRoute(w.mainTable, '10.5.10.0/24', { NetworkInterfaceId: w.otherEni }) // active: not a blackhole
      await ec2.send(new sdk.DeleteNetworkInterfaceCommand({ NetworkInterfaceId: goneId }))

      await setup().backend.registerNetwork(cfg())
      expect(await routes(w.mainTable)).toEqual([
        `10.5.10.0/24>${w.otherEni}`,
        `${OWN}>${w.eni}`,
        `192.0.2.0/24>${goneId}`,
      ])
      expect(
        proxy.calls
          .filter((c) => c.action === 'DeleteRoute')
          .map((c) => c.params.DestinationCidrBlock),
      ).toEqual(['10.5.9.0/24'])
    })

    it('collects routes of leases that are gone while foreign routes survive', async () => {
      const igw = await ec2.send(new sdk.CreateInternetGatewayCommand({}))
      const igwId = igw.InternetGateway?.InternetGatewayId as string
      await ec2.send(
        new sdk.AttachInternetGatewayCommand({ InternetGatewayId: igwId, VpcId: w.vpcId }),
      )
      await addRoute(w.mainTable, '10.5.7.0/24', { NetworkInterfaceId: w.otherEni }) // live peer
      await addRoute(w.mainTable, '10.5.8.0/24', { NetworkInterfaceId: w.otherEni }) // expired lease
      await addRoute(w.mainTable, '10.5.12.0/24', { InstanceId: w.instanceId }) // expired, instance target
      await addRoute(w.mainTable, '172.16.0.0/16', { NetworkInterfaceId: w.otherEni }) // outside Network
      await ec2.send(
        new sdk.CreateRouteCommand({
          RouteTableId: w.mainTable,
          DestinationCidrBlock: '10.5.200.0/24',
          GatewayId: igwId,
        }),
      ) // inside Network but not an instance/ENI target

      // A host that got its lease after the snapshot and made its route at once.
      await addRoute(w.mainTable, '10.5.13.0/24', { NetworkInterfaceId: w.otherEni })
      const network = await setup({ collectDelayMs: 200 }).backend.registerNetwork(cfg())
      const events = new Subject<LeaseEvent[]>()
      const seen: NetworkEvent[] = []
      const sub = network.run(events).subscribe((e) => seen.push(e))
      const wait = async (n: number): Promise<void> => {
        for (let i = 0; i < 500 && seen.filter((e) => e.type === 'repaired').length < n; i++) {
          await new Promise((r) => setTimeout(r, 10))
        }
      }
      try {
        events.next([{ type: 'added', lease: lease('10.5.7.0/24') }])
        // Its lease arrives while the collection waits: it counts as live.
        events.next([{ type: 'added', lease: lease('10.5.13.0/24') }])
        await wait(2)
        expect(await routes(w.mainTable)).toEqual([
          `10.5.13.0/24>${w.otherEni}`,
          `10.5.200.0/24>${igwId}`,
          `${OWN}>${w.eni}`,
          `10.5.7.0/24>${w.otherEni}`,
          `172.16.0.0/16>${w.otherEni}`,
        ])
        expect(
          seen.filter((e) => e.type === 'repaired').map((e) => e.type === 'repaired' && e.detail),
        ).toEqual([
          `${w.mainTable}: 10.5.8.0/24 -> ${w.otherEni}`,
          `${w.mainTable}: 10.5.12.0/24 -> ${w.instanceId}`,
        ])

        events.next([{ type: 'removed', lease: lease('10.5.7.0/24') }])
        await wait(3)
        expect(await routes(w.mainTable)).toEqual([
          `10.5.13.0/24>${w.otherEni}`,
          `10.5.200.0/24>${igwId}`,
          `${OWN}>${w.eni}`,
          `172.16.0.0/16>${w.otherEni}`,
        ])
      } finally {
        sub.unsubscribe()
      }
    })

    it('turns RouteLimitExceeded into RouteLimitError and undoes everything', async () => {
      const a = await newTable(false)
      const b = await newTable(false)
      await addRoute(b, '10.5.1.0/24', { NetworkInterfaceId: w.otherEni })
      await addRoute(b, '10.5.2.0/24', { NetworkInterfaceId: w.otherEni })
      proxy.options.routeLimit = 2 // EC2 answers RouteLimitExceeded (via the proxy; moto has no limit)
      const { backend, released } = setup()
      const err = await rejection(backend.registerNetwork(cfg({ RouteTableID: [a, b] })))
      expect(err).toBeInstanceOf(RouteLimitError)
      expect(isFlannelError(err, 'ROUTE_LIMIT')).toBe(true)
      expect(err).toMatchObject({ table: b, count: 3 })
      expect((err as Error).message).toContain(b)
      expect((err as Error).message).toContain('RouteLimitExceeded')
      // Nothing half-applied: the route in table a is gone again, SourceDestCheck restored, lease released.
      expect(await routes(a)).toEqual([])
      expect(await sourceDestCheck()).toBe(true)
      expect(released.map((l) => l.subnet.toString())).toEqual([OWN])
    })

    it('retries throttled calls with backoff', async () => {
      proxy.fail({
        action: 'DescribeInstances',
        code: 'RequestLimitExceeded',
        message: 'Request limit exceeded.',
        status: 503,
        times: 2,
      })
      await setup().backend.registerNetwork(cfg())
      expect(
        proxy.calls.filter((c) => c.action === 'DescribeInstances').map((c) => c.status),
      ).toEqual([503, 503, 200])
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
    })

    it('gives AwsAuthError for bad credentials and applies nothing', async () => {
      const strict = await startMoto({ requireAuth: true })
      try {
        const { backend, acquired } = setup({ endpoint: strict.endpoint, maxAttempts: 1 })
        const err = await rejection(backend.registerNetwork(cfg()))
        expect(err).toBeInstanceOf(AwsAuthError)
        expect(err).toMatchObject({
          code: 'AWS_AUTH_FAILED',
          awsCode: 'AuthFailure',
          operation: 'DescribeInstances',
        })
        expect((err as Error).message).not.toContain(CREDS.secretAccessKey)
        expect(acquired).toEqual([])
      } finally {
        await strict.close()
      }
    })

    it('gives AwsDiscoveryError for a missing instance and applies nothing', async () => {
      imds.values.instanceId = 'i-0123456789abcdef0'
      const { backend, acquired } = setup()
      const err = await rejection(backend.registerNetwork(cfg()))
      expect(err).toBeInstanceOf(AwsDiscoveryError)
      expect((err as Error).message).toContain('i-0123456789abcdef0')
      expect(acquired).toEqual([])
      expect(mutations()).toEqual([])
      expect(await sourceDestCheck()).toBe(true)
    })

    it('gives AwsDiscoveryError when no ENI carries the interface address', async () => {
      const { backend, acquired } = setup()
      const ctxless = new AwsVpcBackend(
        {
          registry: fixedRegistry().registry,
          extIface: { name: 'eth0', index: 2, mtu: 1500, ifaceAddr: '198.51.100.50' },
        },
        {
          endpoint: proxy.endpoint,
          metadataEndpoint: imds.endpoint,
          env: { AWS_ACCESS_KEY_ID: 'a', AWS_SECRET_ACCESS_KEY: 'b' },
        },
      )
      void backend
      const err = await rejection(ctxless.registerNetwork(cfg()))
      expect(err).toBeInstanceOf(AwsDiscoveryError)
      expect((err as Error).message).toBe(
        `unable to find ENI that matches the 198.51.100.50 IP address (instance ${w.instanceId})`,
      )
      expect(acquired).toEqual([])
    })

    it('gives AwsMetadataError when the metadata service lacks the zone', async () => {
      imds.values.availabilityZone = undefined
      const { backend, acquired } = setup()
      const err = await rejection(backend.registerNetwork(cfg()))
      expect(err).toBeInstanceOf(AwsMetadataError)
      expect((err as Error).message).toMatch(/^error getting EC2 region name: HTTP 404/)
      expect(acquired).toEqual([])
    })

    it('skips the metadata service for region and instance given as options', async () => {
      await setup({ region: REGION, instanceId: w.instanceId }).backend.registerNetwork(cfg())
      expect(imds.requests).toEqual([])
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
    })

    it('rejects an unknown route table before leasing', async () => {
      const { backend, acquired } = setup()
      const err = await rejection(
        backend.registerNetwork(cfg({ RouteTableID: 'rtb-0000000000000dead' })),
      )
      expect(isFlannelError(err)).toBe(true)
      expect((err as Error).message).toContain('rtb-0000000000000dead')
      expect(acquired).toEqual([])
    })

    it('on abort right after CreateRoute, removes the route, restores SourceDestCheck and releases the lease', async () => {
      const abort = new AbortController()
      proxy.onAnswer = (call) => {
        if (call.action === 'CreateRoute') abort.abort()
      }
      try {
        const { backend, released } = setup()
        const err = await rejection(backend.registerNetwork(cfg(), { signal: abort.signal }))
        expect(isFlannelError(err, 'ABORTED')).toBe(true)
        expect(await routes(w.mainTable)).toEqual([])
        expect(await sourceDestCheck()).toBe(true)
        expect(released.map((l) => l.subnet.toString())).toEqual([OWN])
        expect(mutations()).toEqual([
          'ModifyNetworkInterfaceAttribute',
          'CreateRoute',
          'DeleteRoute',
          'ModifyNetworkInterfaceAttribute',
        ])
      } finally {
        proxy.onAnswer = undefined
      }
    })

    it('stops at once on an aborted signal', async () => {
      const { backend, acquired } = setup()
      const err = await rejection(backend.registerNetwork(cfg(), { signal: AbortSignal.abort() }))
      expect(isFlannelError(err, 'ABORTED')).toBe(true)
      expect(acquired).toEqual([])
      expect(imds.requests).toEqual([])
    })
  },
)
