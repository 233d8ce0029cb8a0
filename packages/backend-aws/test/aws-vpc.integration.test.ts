import * as sdk from '@aws-sdk/client-ec2'
import { EMPTY, Subject } from 'rxjs'
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest'
import {
  AbortError,
  ConfigError,
  InvalidArgumentError,
  Ip4Net,
  RouteLimitError,
  isFlannelError,
  parseNetworkConfig,
  type BackendContext,
  type ExternalInterface,
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
  AwsApiError,
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
    /** A second moto with authentication on, for credentials EC2 refuses. */
    let strict: MotoServer
    let proxy: Ec2Proxy
    let imds: Imds
    let ec2: sdk.EC2Client
    let w: World

    beforeAll(async () => {
      // Both start at once (a moto start takes seconds on a busy machine); afterAll
      // stops whichever started, also when the other did not.
      const started = await Promise.allSettled([
        startMoto().then((m) => (moto = m)),
        startMoto({ requireAuth: true }).then((m) => (strict = m)),
      ])
      const failed = started.find((r) => r.status === 'rejected')
      if (failed !== undefined) throw failed.reason
      proxy = await startEc2Proxy(moto)
      // Test fixtures go straight to moto, so the proxy records only the backend's calls.
      ec2 = new sdk.EC2Client({ endpoint: moto.endpoint, region: REGION, credentials: CREDS })
    })
    afterAll(async () => {
      ec2?.destroy()
      await proxy?.close()
      await moto?.close()
      await strict?.close()
    })

    beforeEach(async () => {
      await moto.reset()
      proxy.calls.length = 0
      proxy.options.routeLimit = undefined
      proxy.clearFaults()
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

    function setup(
      options: AwsVpcOptions = {},
      subnet = OWN,
      ext: Partial<ExternalInterface> = {},
    ) {
      const reg = fixedRegistry(subnet)
      const logger = recordingLogger()
      const ctx: BackendContext = {
        registry: reg.registry,
        extIface: {
          name: 'eth0',
          index: 2,
          mtu: 9001,
          ifaceAddr: IFACE_ADDR,
          extAddr: IFACE_ADDR,
          ...ext,
        },
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

    it('skips the metadata service for region and instance given as options', async () => {
      await setup({ region: REGION, instanceId: w.instanceId }).backend.registerNetwork(cfg())
      expect(imds.requests).toEqual([])
      expect(await routes(w.mainTable)).toEqual([`${OWN}>${w.eni}`])
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

    /**
     * One row of the README's errors table, provoked for real: moto, the
     * metadata endpoint, the SDK's credential chain, or the EC2 proxy where it
     * answers what moto cannot (EC2's own error codes and limits).
     */
    interface ErrorCase {
      readonly name: string
      /** Changes the world first; may return a clean-up. */
      readonly arrange?: () => Promise<(() => Promise<void>) | void>
      readonly options?: () => AwsVpcOptions
      readonly backend?: () => Record<string, unknown>
      readonly config?: () => NetworkConfig
      readonly ext?: Partial<ExternalInterface>
      readonly signal?: () => AbortSignal
      readonly error: abstract new (...args: never[]) => Error
      readonly code: string
      /** Expected properties of the error, message included. */
      readonly want: () => Record<string, unknown>
      /** The failure comes after the lease was taken: everything is undone and the lease released. */
      readonly leased?: boolean
    }

    const MISSING_TABLE = 'rtb-0000000000000dead'
    const errorCases: readonly ErrorCase[] = [
      {
        name: 'RouteTableID neither a string nor an array',
        backend: () => ({ RouteTableID: 42 }),
        error: ConfigError,
        code: 'CONFIG_INVALID',
        want: () => ({
          message: 'Unexpected RouteTableID type. Must be string or array of strings.',
          field: 'Backend.RouteTableID',
          value: 42,
        }),
      },
      {
        name: 'RouteTableID array holding a non-string',
        backend: () => ({ RouteTableID: ['rtb-0a1b', 7] }),
        error: ConfigError,
        code: 'CONFIG_INVALID',
        want: () => ({
          message: 'Unexpected type in RouteTableID slice. Must be strings.',
          field: 'Backend.RouteTableID',
          value: ['rtb-0a1b', 7],
        }),
      },
      {
        name: 'RouteTableID an empty array',
        backend: () => ({ RouteTableID: [] }),
        error: ConfigError,
        code: 'CONFIG_INVALID',
        want: () => ({
          message:
            'invalid Backend.RouteTableID []: name at least one route table, or leave RouteTableID out to detect it',
          field: 'Backend.RouteTableID',
          value: [],
        }),
      },
      {
        name: 'RouteTableID an empty string',
        backend: () => ({ RouteTableID: '' }),
        error: ConfigError,
        code: 'CONFIG_INVALID',
        want: () => ({
          message: 'invalid Backend.RouteTableID "": a route table id is never empty',
          field: 'Backend.RouteTableID',
          value: '',
        }),
      },
      {
        name: 'no Network (an IPv6-only config)',
        config: () =>
          parseNetworkConfig({
            EnableIPv4: false,
            EnableIPv6: true,
            IPv6Network: 'fd00:5::/48',
            Backend: { Type: 'aws-vpc' },
          }),
        error: ConfigError,
        code: 'CONFIG_INVALID',
        want: () => ({
          message: 'please define a correct Network parameter in the flannel config',
          field: 'Network',
        }),
      },
      {
        name: 'interface without an IPv4 address',
        ext: { ifaceAddr: undefined },
        error: InvalidArgumentError,
        code: 'INVALID_ARGUMENT',
        want: () => ({ field: 'extIface.ifaceAddr', value: undefined }),
      },
      {
        name: 'metadata without the availability zone',
        arrange: async () => {
          imds.values.availabilityZone = undefined
        },
        error: AwsMetadataError,
        code: 'AWS_METADATA',
        want: () => ({
          message: expect.stringMatching(/^error getting EC2 region name: HTTP 404/),
          path: '/latest/meta-data/placement/availability-zone',
        }),
      },
      {
        name: 'metadata without the instance id',
        arrange: async () => {
          imds.values.instanceId = undefined
        },
        error: AwsMetadataError,
        code: 'AWS_METADATA',
        want: () => ({
          message: expect.stringMatching(/^error getting EC2 instance ID: HTTP 404/),
          path: '/latest/meta-data/instance-id',
        }),
      },
      {
        name: 'an instance EC2 does not know',
        arrange: async () => {
          imds.values.instanceId = 'i-0123456789abcdef0'
        },
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `error getting EC2 instance: instance i-0123456789abcdef0 not found in ${REGION}`,
          what: 'instance',
          value: 'i-0123456789abcdef0',
        }),
      },
      {
        name: 'an instance id EC2 calls malformed',
        arrange: async () => {
          imds.values.instanceId = 'i-nonsense'
          // moto answers NotFound for any id; EC2 itself says Malformed for this one.
          proxy.fail({
            action: 'DescribeInstances',
            code: 'InvalidInstanceID.Malformed',
            message: 'Invalid id: "i-nonsense"',
            times: 1,
          })
        },
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `error getting EC2 instance: instance i-nonsense not found in ${REGION}`,
          what: 'instance',
          value: 'i-nonsense',
        }),
      },
      {
        name: 'no ENI carrying the interface address',
        ext: { ifaceAddr: '198.51.100.50' },
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `unable to find ENI that matches the 198.51.100.50 IP address (instance ${w.instanceId})`,
          what: 'network-interface',
          value: '198.51.100.50',
        }),
      },
      {
        name: 'no RouteTableID and none to detect (subnet unassociated, no main table)',
        arrange: async () => {
          await ec2.send(new sdk.DeleteRouteTableCommand({ RouteTableId: w.mainTable }))
        },
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message:
            `main route table not found: Backend.RouteTableID is not set, subnet ${w.subnetId} ` +
            `has no route table associated and VPC ${w.vpcId} has no main route table`,
          what: 'route-table',
          value: w.vpcId,
        }),
      },
      {
        name: 'RouteTableID naming a table that does not exist',
        backend: () => ({ RouteTableID: MISSING_TABLE }),
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `route table "${MISSING_TABLE}" (Backend.RouteTableID) not found in ${REGION}`,
          what: 'route-table',
          value: MISSING_TABLE,
        }),
      },
      {
        name: 'RouteTableID array with one table that does not exist',
        backend: () => ({ RouteTableID: [w.mainTable, MISSING_TABLE] }),
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `route table "${MISSING_TABLE}" (Backend.RouteTableID) not found in ${REGION}`,
          what: 'route-table',
          value: MISSING_TABLE,
        }),
      },
      {
        name: 'routeTableIds option naming a table that does not exist',
        options: () => ({ routeTableIds: [MISSING_TABLE] }),
        error: AwsDiscoveryError,
        code: 'AWS_DISCOVERY',
        want: () => ({
          message: `route table "${MISSING_TABLE}" (routeTableIds) not found in ${REGION}`,
          what: 'route-table',
          value: MISSING_TABLE,
        }),
      },
      {
        name: 'credentials EC2 does not know',
        options: () => ({ endpoint: strict.endpoint, maxAttempts: 1 }),
        error: AwsAuthError,
        code: 'AWS_AUTH_FAILED',
        want: () => ({ awsCode: 'AuthFailure', operation: 'DescribeInstances', retryable: false }),
      },
      {
        name: 'an IAM permission missing',
        arrange: async () => {
          proxy.fail({
            action: 'DescribeRouteTables',
            code: 'UnauthorizedOperation',
            message: 'You are not authorized to perform this operation.',
            status: 403,
            times: 1,
          })
        },
        error: AwsAuthError,
        code: 'AWS_AUTH_FAILED',
        want: () => ({
          awsCode: 'UnauthorizedOperation',
          operation: 'DescribeRouteTables',
          httpStatus: 403,
        }),
      },
      {
        name: "no credentials anywhere in the SDK's default chain",
        arrange: async () => {
          const saved = { ...process.env }
          for (const key of Object.keys(process.env)) {
            if (key.startsWith('AWS_')) delete process.env[key]
          }
          // Nothing to find, and nothing leaves this host: the chain's instance role
          // lookup is off and would go to the loopback metadata endpoint anyway.
          Object.assign(process.env, {
            AWS_EC2_METADATA_DISABLED: 'true',
            AWS_EC2_METADATA_SERVICE_ENDPOINT: imds.endpoint,
            AWS_SHARED_CREDENTIALS_FILE: '/nonexistent/flannel-test/credentials',
            AWS_CONFIG_FILE: '/nonexistent/flannel-test/config',
          })
          return async () => {
            for (const key of Object.keys(process.env)) {
              if (!(key in saved)) delete process.env[key]
            }
            Object.assign(process.env, saved)
          }
        },
        options: () => ({ env: {}, maxAttempts: 1 }),
        error: AwsAuthError,
        code: 'AWS_AUTH_FAILED',
        want: () => ({ awsCode: 'CredentialsProviderError', operation: 'DescribeInstances' }),
      },
      {
        name: 'any other EC2 error',
        arrange: async () => {
          proxy.fail({
            action: 'CreateRoute',
            code: 'InvalidParameterValue',
            message: 'Value for parameter destinationCidrBlock is invalid.',
            times: 1,
          })
        },
        error: AwsApiError,
        code: 'AWS_API_ERROR',
        want: () => ({
          message: expect.stringMatching(
            /^unable to add route 10\.5\.34\.0\/24: EC2 CreateRoute failed \(InvalidParameterValue\)/,
          ),
          awsCode: 'InvalidParameterValue',
          operation: 'CreateRoute',
          httpStatus: 400,
          retryable: false,
        }),
        leased: true,
      },
      {
        name: 'EC2 failing on every attempt',
        arrange: async () => {
          proxy.fail({
            action: 'DescribeInstances',
            code: 'InternalError',
            message: 'An internal error has occurred',
            status: 500,
            times: 2,
          })
        },
        options: () => ({ maxAttempts: 2 }),
        error: AwsApiError,
        code: 'AWS_API_ERROR',
        want: () => ({
          awsCode: 'InternalError',
          operation: 'DescribeInstances',
          httpStatus: 500,
          retryable: true,
        }),
      },
      {
        name: 'a full route table',
        arrange: async () => {
          proxy.options.routeLimit = 0
        },
        error: RouteLimitError,
        code: 'ROUTE_LIMIT',
        // The table holds only its local route.
        want: () => ({ table: w.mainTable, count: 1 }),
        leased: true,
      },
      {
        name: 'an aborted signal',
        signal: () => AbortSignal.abort(),
        error: AbortError,
        code: 'ABORTED',
        want: () => ({}),
      },
    ]

    it.each(errorCases)('errors table: $name', async (c) => {
      const cleanup = await c.arrange?.()
      try {
        const { backend, acquired, released } = setup(c.options?.() ?? {}, OWN, c.ext)
        const config = c.config?.() ?? cfg(c.backend?.())
        const err = await rejection(
          backend.registerNetwork(config, c.signal ? { signal: c.signal() } : {}),
        )
        expect(err).toBeInstanceOf(c.error)
        expect(isFlannelError(err, c.code)).toBe(true)
        expect(err).toMatchObject(c.want())
        expect((err as Error).message).not.toContain(CREDS.secretAccessKey)
        if (c.leased) {
          expect(released.map((l) => l.subnet.toString())).toEqual([OWN])
        } else {
          // Before the lease nothing is changed.
          expect(acquired).toEqual([])
          expect(mutations()).toEqual([])
        }
        expect(await routes(w.mainTable).catch(() => [])).toEqual([])
        expect(await sourceDestCheck()).toBe(true)
      } finally {
        await cleanup?.()
      }
    })
  },
)
