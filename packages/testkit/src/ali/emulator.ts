import { randomUUID, timingSafeEqual } from 'node:crypto'
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'
import { signRpc, stringToSign } from './signature.js'

/** A route entry as the emulator stores it (field names of the API's responses). */
export interface AliRouteEntry {
  RouteTableId: string
  DestinationCidrBlock: string
  Type: 'System' | 'Custom'
  NextHopType: string
  NextHopId: string
  InstanceId: string
  Status: 'Pending' | 'Available' | 'Modifying'
}

/** One request the emulator answered (signature-checked or not). */
export interface AliRequestRecord {
  readonly method: string
  readonly action: string
  /** All parameters except `Signature` (and never the secret, which is never sent). */
  readonly params: Readonly<Record<string, string>>
  readonly status: number
  /** The error `Code` answered, when the request failed. */
  readonly code?: string | undefined
}

/** Options of {@link startAliEmulator}. */
export interface AliEmulatorOptions {
  /** Known access keys, id -> secret. Default: one key, see {@link AliEmulator.accessKeyId}. */
  readonly accessKeys?: Readonly<Record<string, string>>
  readonly regionId?: string
  /** The instance the metadata endpoint reports as "this" instance. */
  readonly instanceId?: string
  /** Further instances that may be used as next hops. */
  readonly otherInstances?: readonly string[]
  readonly vpcId?: string
  readonly vrouterId?: string
  readonly routeTableId?: string
  readonly vpcCidr?: string
  /** Custom route entries one table accepts (the era's documented quota: 50). */
  readonly routeEntryLimit?: number
  /** How many DescribeRouteTables answers show a new entry as `Pending` before `Available`. Default 1. */
  readonly pendingDescribes?: number
  /**
   * Refuse CreateRouteEntry/DeleteRouteEntry with `IncorrectRouteEntryStatus`
   * while any entry of the table is `Pending`, as the real API does. Default false.
   */
  readonly refuseWhilePending?: boolean
}

/** A running emulator of the ECS/VPC RPC API and the instance metadata server. */
export interface AliEmulator {
  /** API endpoint, `http://127.0.0.1:<port>`. */
  readonly endpoint: string
  /** Metadata endpoint (same server; paths `/latest/meta-data/...`). */
  readonly metadataEndpoint: string
  readonly accessKeyId: string
  readonly accessKeySecret: string
  readonly regionId: string
  readonly instanceId: string
  readonly vpcId: string
  readonly vrouterId: string
  readonly routeTableId: string
  /** Every API request answered, in order. */
  readonly requests: AliRequestRecord[]
  /** Metadata paths requested, in order. */
  readonly metadataRequests: string[]
  /** A snapshot of the route table's entries. */
  routeEntries(): AliRouteEntry[]
  /** Seeds an entry (default: Custom, Available, next hop an instance). */
  addRouteEntry(entry: {
    destination: string
    instanceId: string
    status?: AliRouteEntry['Status']
    type?: AliRouteEntry['Type']
  }): void
  /** While on, entries stay `Pending` forever (to test the Available wait's timeout). */
  holdPending(on: boolean): void
  /** Answers the next call of `action` with an error instead of performing it. */
  failNext(action: string, code: string, message: string, status?: number): void
  /** Makes a metadata path answer with `status` (e.g. 404) until reset with `undefined`. */
  setMetadataStatus(path: string, status: number | undefined): void
  close(): Promise<void>
}

const SUPPORTED_VERSIONS = new Set(['2014-05-26', '2016-04-28'])

class ApiError extends Error {
  constructor(
    readonly status: number,
    readonly code: string,
    message: string,
  ) {
    super(message)
  }
}

/**
 * Starts a local HTTP server (127.0.0.1, free port) that speaks Alibaba
 * Cloud's RPC API as the ali-vpc backend uses it: every request's signature
 * (v1, HMAC-SHA1 over the canonicalized query with `secret + '&'`) is checked
 * and refused like the real API (`SignatureDoesNotMatch`,
 * `InvalidAccessKeyId.NotFound`, `SignatureNonceUsed`); DescribeVpcs,
 * DescribeVRouters, DescribeRouteTables, CreateRouteEntry and
 * DeleteRouteEntry answer with the real response shapes; and the metadata
 * server's region-id, instance-id and vpc-id paths are served.
 */
export async function startAliEmulator(options: AliEmulatorOptions = {}): Promise<AliEmulator> {
  const accessKeys = options.accessKeys ?? { LTAI5tFlannelTest01: 'flannel-test-secret-0001' }
  const [accessKeyId, accessKeySecret] = Object.entries(accessKeys)[0] ?? ['', '']
  const regionId = options.regionId ?? 'cn-hangzhou'
  const instanceId = options.instanceId ?? 'i-bp1flannel0000001'
  const instances = new Set([
    instanceId,
    ...(options.otherInstances ?? ['i-bp1flannel0000002', 'i-bp1flannel0000003']),
  ])
  const vpcId = options.vpcId ?? 'vpc-bp1flannel00001'
  const vrouterId = options.vrouterId ?? 'vrt-bp1flannel00001'
  const routeTableId = options.routeTableId ?? 'vtb-bp1flannel00001'
  const vpcCidr = options.vpcCidr ?? '192.168.0.0/16'
  const limit = options.routeEntryLimit ?? 50
  const pendingDescribes = options.pendingDescribes ?? 1
  const refuseWhilePending = options.refuseWhilePending ?? false

  type Stored = AliRouteEntry & { pendingLeft: number }
  const entries: Stored[] = [system(vpcCidr, 'local'), system('100.64.0.0/10', 'service')]
  function system(cidr: string, hop: string): Stored {
    return {
      RouteTableId: routeTableId,
      DestinationCidrBlock: cidr,
      Type: 'System',
      NextHopType: hop,
      NextHopId: '',
      InstanceId: '',
      Status: 'Available',
      pendingLeft: 0,
    }
  }
  let hold = false
  const failures = new Map<string, ApiError>()
  const nonces = new Set<string>()
  const metadataStatus = new Map<string, number>()
  const requests: AliRequestRecord[] = []
  const metadataRequests: string[] = []

  const metadata: Record<string, string> = {
    '/latest/meta-data/region-id': regionId,
    '/latest/meta-data/instance-id': instanceId,
    '/latest/meta-data/vpc-id': vpcId,
  }

  const view = (e: Stored): AliRouteEntry => ({
    RouteTableId: e.RouteTableId,
    DestinationCidrBlock: e.DestinationCidrBlock,
    Type: e.Type,
    NextHopType: e.NextHopType,
    NextHopId: e.NextHopId,
    InstanceId: e.InstanceId,
    Status: e.Status,
  })

  function required(params: Map<string, string>, name: string): string {
    const value = params.get(name)
    if (value === undefined || value === '') {
      throw new ApiError(
        400,
        `Missing${name}`,
        `The input parameter "${name}" that is mandatory for processing this request is not supplied.`,
      )
    }
    return value
  }

  function checkTable(params: Map<string, string>): void {
    if (required(params, 'RouteTableId') !== routeTableId) {
      throw new ApiError(
        404,
        'InvalidRouteTableId.NotFound',
        'Specified route table does not exist.',
      )
    }
    if (refuseWhilePending && entries.some((e) => e.Status === 'Pending')) {
      throw new ApiError(
        400,
        'IncorrectRouteEntryStatus',
        'The current status of route entry does not support this operation.',
      )
    }
  }

  const actions: Record<string, (p: Map<string, string>) => Record<string, unknown>> = {
    DescribeVpcs(p) {
      if (required(p, 'RegionId') !== regionId) {
        throw new ApiError(
          400,
          'InvalidRegionId.NotFound',
          'The specified RegionId does not exist.',
        )
      }
      const filter = p.get('VpcId')
      const vpcs =
        filter === undefined || filter === vpcId
          ? [
              {
                VpcId: vpcId,
                RegionId: regionId,
                Status: 'Available',
                VpcName: 'flannel-test',
                CreationTime: '2017-06-01T08:00:00Z',
                CidrBlock: vpcCidr,
                VRouterId: vrouterId,
                Description: '',
                IsDefault: false,
                VSwitchIds: { VSwitchId: ['vsw-bp1flannel00001'] },
                UserCidrs: { UserCidr: [] },
              },
            ]
          : []
      return { TotalCount: vpcs.length, PageNumber: 1, PageSize: 10, Vpcs: { Vpc: vpcs } }
    },
    DescribeVRouters(p) {
      if (required(p, 'RegionId') !== regionId) {
        throw new ApiError(
          400,
          'InvalidRegionId.NotFound',
          'The specified RegionId does not exist.',
        )
      }
      const filter = p.get('VRouterId')
      const routers =
        filter === undefined || filter === vrouterId
          ? [
              {
                RegionId: regionId,
                VpcId: vpcId,
                VRouterName: '',
                Description: '',
                VRouterId: vrouterId,
                CreationTime: '2017-06-01T08:00:00Z',
                RouteTableIds: { RouteTableId: [routeTableId] },
              },
            ]
          : []
      return {
        TotalCount: routers.length,
        PageNumber: 1,
        PageSize: 10,
        VRouters: { VRouter: routers },
      }
    },
    DescribeRouteTables(p) {
      const router = p.get('VRouterId')
      const table = p.get('RouteTableId')
      const match =
        (router === undefined || router === vrouterId) &&
        (table === undefined || table === routeTableId)
      const shown = entries.map(view)
      if (!hold) {
        for (const e of entries) {
          if (e.Status !== 'Available' && --e.pendingLeft < 0) e.Status = 'Available'
        }
      }
      const tables = match
        ? [
            {
              VRouterId: vrouterId,
              RouteTableId: routeTableId,
              RouteTableType: 'System',
              CreationTime: '2017-06-01T08:00:00Z',
              RouteEntrys: {
                RouteEntry: shown.map((e) => ({ ...e, NextHops: { NextHop: [] } })),
              },
            },
          ]
        : []
      return {
        TotalCount: tables.length,
        PageNumber: 1,
        PageSize: 10,
        RouteTables: { RouteTable: tables },
      }
    },
    CreateRouteEntry(p) {
      checkTable(p)
      const cidr = required(p, 'DestinationCidrBlock')
      const hopType = p.get('NextHopType') ?? 'Instance'
      const hop = required(p, 'NextHopId')
      if (hopType === 'Instance' && !instances.has(hop)) {
        throw new ApiError(
          404,
          'InvalidInstanceId.NotFound',
          'The specified instance does not exist.',
        )
      }
      if (entries.some((e) => e.DestinationCidrBlock === cidr)) {
        throw new ApiError(
          400,
          'InvalidCIDRBlock.Duplicate',
          'Specified CIDR block is already exists.',
        )
      }
      if (entries.filter((e) => e.Type === 'Custom').length >= limit) {
        throw new ApiError(400, 'QuotaExceeded', 'Route entry quota exceeded in this route table')
      }
      entries.push({
        RouteTableId: routeTableId,
        DestinationCidrBlock: cidr,
        Type: 'Custom',
        NextHopType: hopType,
        NextHopId: hop,
        InstanceId: hopType === 'Instance' ? hop : '',
        Status: 'Pending',
        pendingLeft: pendingDescribes - 1,
      })
      return {}
    },
    DeleteRouteEntry(p) {
      checkTable(p)
      const cidr = required(p, 'DestinationCidrBlock')
      const hop = p.get('NextHopId')
      const index = entries.findIndex(
        (e) => e.DestinationCidrBlock === cidr && (hop === undefined || e.NextHopId === hop),
      )
      if (index < 0) {
        throw new ApiError(404, 'InvalidRouteEntry.NotFound', 'Specified route entry is not found.')
      }
      if (entries[index]!.Type !== 'Custom') {
        throw new ApiError(403, 'OperationDenied', 'The system route entry can not be deleted.')
      }
      entries.splice(index, 1)
      return {}
    },
  }

  function verify(method: string, params: Map<string, string>): void {
    if (!SUPPORTED_VERSIONS.has(params.get('Version') ?? '')) {
      throw new ApiError(400, 'InvalidVersion', 'Specified parameter Version is not valid.')
    }
    const keyId = params.get('AccessKeyId')
    if (keyId === undefined) {
      throw new ApiError(400, 'MissingAccessKeyId', 'AccessKeyId is mandatory for this action.')
    }
    const secret = accessKeys[keyId]
    if (secret === undefined) {
      throw new ApiError(404, 'InvalidAccessKeyId.NotFound', 'Specified access key is not found.')
    }
    if (params.get('SignatureMethod') !== 'HMAC-SHA1' || params.get('SignatureVersion') !== '1.0') {
      throw new ApiError(
        400,
        'InvalidParameter',
        'Specified signature method or version is not valid.',
      )
    }
    if (!/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$/.test(params.get('Timestamp') ?? '')) {
      throw new ApiError(
        400,
        'InvalidTimeStamp.Format',
        'Specified time stamp or date value is not well formatted.',
      )
    }
    const toSign = stringToSign(method, params)
    const expected = Buffer.from(signRpc(toSign, secret))
    const given = Buffer.from(params.get('Signature') ?? '')
    if (expected.length !== given.length || !timingSafeEqual(expected, given)) {
      throw new ApiError(
        400,
        'SignatureDoesNotMatch',
        `Specified signature is not matched with our calculation. server string to sign is:${toSign}`,
      )
    }
    const nonce = params.get('SignatureNonce') ?? ''
    if (nonce === '' || nonces.has(nonce)) {
      throw new ApiError(400, 'SignatureNonceUsed', 'Specified signature nonce was used already.')
    }
    nonces.add(nonce)
  }

  async function readParams(req: IncomingMessage, url: URL): Promise<Map<string, string>> {
    const params = new Map(url.searchParams)
    if (req.method === 'POST') {
      let body = ''
      for await (const chunk of req) body += String(chunk)
      for (const [k, v] of new URLSearchParams(body)) params.set(k, v)
    }
    return params
  }

  function send(res: ServerResponse, status: number, body: unknown): void {
    const text = JSON.stringify(body)
    res.writeHead(status, {
      'content-type': 'application/json;charset=utf-8',
      'content-length': Buffer.byteLength(text),
    })
    res.end(text)
  }

  const server = createServer((req, res) => {
    void (async () => {
      const url = new URL(req.url ?? '/', 'http://127.0.0.1')
      if (url.pathname.startsWith('/latest/meta-data/')) {
        metadataRequests.push(url.pathname)
        const status =
          metadataStatus.get(url.pathname) ?? (metadata[url.pathname] === undefined ? 404 : 200)
        res.writeHead(status, { 'content-type': 'text/plain' })
        res.end(status === 200 ? metadata[url.pathname] : 'Not Found')
        return
      }
      const method = (req.method ?? 'GET').toUpperCase()
      const params = await readParams(req, url)
      const action = params.get('Action') ?? ''
      const recorded = Object.fromEntries([...params].filter(([k]) => k !== 'Signature'))
      const requestId = randomUUID().toUpperCase()
      try {
        verify(method, params)
        const handler = actions[action]
        if (handler === undefined) {
          throw new ApiError(
            404,
            'InvalidAction.NotFound',
            'Specified api is not found, please check your url and method.',
          )
        }
        const injected = failures.get(action)
        if (injected !== undefined) {
          failures.delete(action)
          throw injected
        }
        const body = handler(params)
        requests.push({ method, action, params: recorded, status: 200 })
        send(res, 200, { RequestId: requestId, ...body })
      } catch (err) {
        const e =
          err instanceof ApiError
            ? err
            : new ApiError(
                500,
                'InternalError',
                'The request processing has failed due to some unknown error.',
              )
        requests.push({ method, action, params: recorded, status: e.status, code: e.code })
        send(res, e.status, {
          RequestId: requestId,
          HostId: url.host,
          Code: e.code,
          Message: e.message,
          Recommend: `https://api.aliyun.com/troubleshoot?q=${encodeURIComponent(e.code)}`,
        })
      }
    })()
  })
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(0, '127.0.0.1', () => resolve())
  })
  const { port } = server.address() as AddressInfo
  const endpoint = `http://127.0.0.1:${port}`

  return {
    endpoint,
    metadataEndpoint: endpoint,
    accessKeyId,
    accessKeySecret,
    regionId,
    instanceId,
    vpcId,
    vrouterId,
    routeTableId,
    requests,
    metadataRequests,
    routeEntries: () => entries.map(view),
    addRouteEntry({ destination, instanceId: hop, status = 'Available', type = 'Custom' }) {
      instances.add(hop)
      entries.push({
        RouteTableId: routeTableId,
        DestinationCidrBlock: destination,
        Type: type,
        NextHopType: 'Instance',
        NextHopId: hop,
        InstanceId: hop,
        Status: status,
        pendingLeft: status === 'Available' ? 0 : pendingDescribes - 1,
      })
    },
    holdPending(on) {
      hold = on
    },
    failNext(action, code, message, status = 400) {
      failures.set(action, new ApiError(status, code, message))
    },
    setMetadataStatus(path, status) {
      if (status === undefined) metadataStatus.delete(path)
      else metadataStatus.set(path, status)
    },
    async close() {
      server.closeAllConnections()
      await new Promise<void>((resolve) => server.close(() => resolve()))
    },
  }
}
