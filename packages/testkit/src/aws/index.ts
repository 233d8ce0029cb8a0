/**
 * AWS test peers: moto's EC2 server (started on 127.0.0.1 with a free port),
 * a small instance-metadata endpoint speaking IMDSv2 (token PUT, then GETs),
 * and an EC2 proxy in front of moto that adds what moto lacks: the route-table
 * limit (`RouteLimitExceeded`), `blackhole` state for routes whose target is
 * gone, and injected API errors (throttling).
 */
import { spawn, type ChildProcess } from 'node:child_process'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { forward, freePort, startLocalServer, startProxy, type ProxyAnswer } from '../http/index.js'

/** Where scripts/setup.sh installs moto. Override with env `MOTO_SERVER`. */
export const MOTO_SERVER_PATH =
  process.env.MOTO_SERVER ??
  fileURLToPath(new URL('../../../../.venv/moto/bin/moto_server', import.meta.url))

/** Why moto cannot be started here, or undefined when it can. */
export function motoUnavailableReason(): string | undefined {
  return existsSync(MOTO_SERVER_PATH)
    ? undefined
    : `moto_server not found at ${MOTO_SERVER_PATH} (run scripts/setup.sh, or set MOTO_SERVER)`
}

/** Options of {@link startMoto}. */
export interface MotoOptions {
  /**
   * Check credentials like AWS (moto's `INITIAL_NO_AUTH_ACTION_COUNT=0`): any
   * access key moto's IAM does not know is refused.
   */
  readonly requireAuth?: boolean | undefined
}

/** A running moto server. */
export interface MotoServer {
  /** `http://127.0.0.1:<port>`: pass as the SDK's `endpoint`. */
  readonly endpoint: string
  /** Forgets every resource (moto's `/moto-api/reset`). */
  reset(): Promise<void>
  /** Stops the process. */
  close(): Promise<void>
}

/** Starts `moto_server` on 127.0.0.1 with a free port and waits until it answers. */
export async function startMoto(options: MotoOptions = {}): Promise<MotoServer> {
  const reason = motoUnavailableReason()
  if (reason !== undefined) throw new Error(reason)
  const port = await freePort()
  const child: ChildProcess = spawn(MOTO_SERVER_PATH, ['-H', '127.0.0.1', '-p', String(port)], {
    stdio: ['ignore', 'ignore', 'pipe'],
    env: {
      ...process.env,
      ...(options.requireAuth === true ? { INITIAL_NO_AUTH_ACTION_COUNT: '0' } : {}),
    },
  })
  let stderr = ''
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-4000)
  })
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()))
  const endpoint = `http://127.0.0.1:${port}`
  const close = async (): Promise<void> => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM')
    await exited
  }
  const deadline = Date.now() + 20_000
  for (;;) {
    if (child.exitCode !== null) throw new Error(`moto_server exited: ${stderr}`)
    try {
      const res = await fetch(`${endpoint}/moto-api/`)
      await res.arrayBuffer()
      if (res.ok) break
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) {
      await close()
      throw new Error(`moto_server did not answer on ${endpoint}: ${stderr}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
  return {
    endpoint,
    reset: async () => {
      const res = await fetch(`${endpoint}/moto-api/reset`, { method: 'POST' })
      await res.arrayBuffer()
    },
    close,
  }
}

/** Options of {@link startImds}. */
export interface ImdsOptions {
  /** `placement/availability-zone`, e.g. `us-east-1a`. Absent: 404. */
  availabilityZone?: string | undefined
  /** `instance-id`. Absent: 404. */
  instanceId?: string | undefined
  /** Refuse tokenless GETs with 401, as an instance with IMDSv2 required does. Default true. */
  requireToken?: boolean | undefined
}

/** A request the metadata endpoint received. */
export interface ImdsRequest {
  readonly method: string
  readonly path: string
  readonly token: string | undefined
  readonly ttl: string | undefined
}

/** A running instance-metadata endpoint. */
export interface Imds {
  /** `http://127.0.0.1:<port>` (the SDK's and flannel's `http://169.254.169.254`). */
  readonly endpoint: string
  /** Every request, in order. */
  readonly requests: ImdsRequest[]
  /** The values served; change them at will. */
  readonly values: ImdsOptions
  close(): Promise<void>
}

/** Starts a loopback IMDSv2 endpoint: `PUT /latest/api/token`, then GETs under `/latest/meta-data/`. */
export async function startImds(options: ImdsOptions = {}): Promise<Imds> {
  const values: ImdsOptions = { requireToken: true, ...options }
  const tokens = new Set<string>()
  const requests: ImdsRequest[] = []
  const server = await startLocalServer((req, res) => {
    const header = (name: string): string | undefined => {
      const v = req.headers[name]
      return Array.isArray(v) ? v[0] : v
    }
    const token = header('x-aws-ec2-metadata-token')
    const ttl = header('x-aws-ec2-metadata-token-ttl-seconds')
    const path = new URL(req.url ?? '/', 'http://x').pathname
    requests.push({ method: req.method ?? '', path, token, ttl })
    if (path === '/latest/api/token') {
      if (req.method !== 'PUT') return send(405, '')
      if (ttl === undefined || !/^\d+$/.test(ttl) || Number(ttl) < 1 || Number(ttl) > 21600) {
        return send(400, '')
      }
      const t = `tok-${Math.random().toString(36).slice(2)}`
      tokens.add(t)
      return send(200, t, { 'x-aws-ec2-metadata-token-ttl-seconds': ttl })
    }
    if (req.method !== 'GET') return send(405, '')
    if (token !== undefined ? !tokens.has(token) : values.requireToken !== false) {
      return send(401, '')
    }
    const served: Record<string, string | undefined> = {
      '/latest/meta-data/placement/availability-zone': values.availabilityZone,
      '/latest/meta-data/instance-id': values.instanceId,
    }
    const value = served[path]
    return value === undefined ? send(404, notFoundPage) : send(200, value)

    function send(status: number, body: string, headers: Record<string, string> = {}): void {
      res.writeHead(status, { 'content-type': 'text/plain', ...headers })
      res.end(body)
    }
  })
  return { endpoint: server.url, requests, values, close: server.close }
}

const notFoundPage =
  '<?xml version="1.0" encoding="iso-8859-1"?>\n<html><head><title>404 - Not Found</title></head><body><h1>404 - Not Found</h1></body></html>\n'

/** An EC2 Query API call seen by the proxy. */
export interface Ec2Call {
  /** `Action`, e.g. `CreateRoute`. */
  readonly action: string
  /** Every form parameter. */
  readonly params: Readonly<Record<string, string>>
  /** The HTTP status answered. */
  status: number
}

/** An error the proxy answers instead of moto. */
export interface Ec2Fault {
  /** The action to fail, e.g. `DescribeInstances`. */
  readonly action: string
  /** EC2 error code, e.g. `RequestLimitExceeded`. */
  readonly code: string
  /** Error message. */
  readonly message: string
  /** HTTP status (EC2 uses 400 for client errors, 503 for throttling). Default 400. */
  readonly status?: number | undefined
  /** How many times; default: always. */
  times?: number | undefined
}

/** Options of {@link startEc2Proxy}. */
export interface Ec2ProxyOptions {
  /**
   * The most routes (of origin `CreateRoute`) a table may hold; a `CreateRoute`
   * beyond it is answered with EC2's `RouteLimitExceeded` error. Default: no limit.
   */
  routeLimit?: number | undefined
}

/** A running EC2 proxy in front of moto. */
export interface Ec2Proxy {
  /** Pass as the SDK's `endpoint`. */
  readonly endpoint: string
  /** Every EC2 call that went through, in order. */
  readonly calls: Ec2Call[]
  /** Changeable options. */
  readonly options: Ec2ProxyOptions
  /** Answers matching calls with an EC2 error instead of forwarding them. */
  fail(fault: Ec2Fault): void
  /** Forgets every fault given to {@link Ec2Proxy.fail} that is still pending. */
  clearFaults(): void
  /** Called once moto has answered a call, before the answer is sent on (e.g. to abort the caller then). */
  onAnswer: ((call: Ec2Call) => void) | undefined
  close(): Promise<void>
}

/**
 * Starts an EC2 Query API proxy in front of moto. It forwards everything and
 * adds AWS behaviour moto does not have:
 * - `RouteLimitExceeded` (the real error code and XML shape) for a
 *   `CreateRoute` into a table that already holds `routeLimit` routes;
 * - `DescribeRouteTables` reports `<state>blackhole</state>` for routes whose
 *   network interface no longer exists or whose instance is terminated, as
 *   EC2 does (moto always says `active`);
 * - injected faults (e.g. throttling).
 */
export async function startEc2Proxy(
  moto: { readonly endpoint: string },
  options: Ec2ProxyOptions = {},
): Promise<Ec2Proxy> {
  const calls: Ec2Call[] = []
  const faults: Ec2Fault[] = []
  const target = moto.endpoint
  const server = await startProxy(target, {
    before: async (req, body) => {
      const params = Object.fromEntries(new URLSearchParams(body.toString('utf8')))
      const action = params.Action ?? ''
      const call: Ec2Call = { action, params, status: 0 }
      calls.push(call)
      const fault = faults.find((f) => f.action === action && (f.times ?? 1) > 0)
      if (fault !== undefined) {
        if (fault.times !== undefined) fault.times -= 1
        call.status = fault.status ?? 400
        return errorAnswer(call.status, fault.code, fault.message)
      }
      if (action === 'CreateRoute' && options.routeLimit !== undefined) {
        const xml = await sideCall(target, req.headers.authorization, {
          Action: 'DescribeRouteTables',
          'RouteTableId.1': params.RouteTableId ?? '',
        })
        const count = (xml.match(/<origin>CreateRoute<\/origin>/g) ?? []).length
        if (count >= options.routeLimit) {
          call.status = 400
          return errorAnswer(
            400,
            'RouteLimitExceeded',
            `The maximum number of routes has been reached for route table ${params.RouteTableId ?? ''}.`,
          )
        }
      }
      call.status = -1 // set from the answer below
      return undefined
    },
    after: async (req, body, answer) => {
      const last = calls.at(-1)
      if (last?.status === -1) last.status = answer.status
      if (last !== undefined) proxy.onAnswer?.(last)
      const action = new URLSearchParams(body.toString('utf8')).get('Action')
      if (action !== 'DescribeRouteTables' || answer.status !== 200) return undefined
      return Buffer.from(await markBlackholes(target, req.headers.authorization, answer.body))
    },
  })
  const proxy: Ec2Proxy = {
    endpoint: server.url,
    calls,
    options,
    fail: (fault) => faults.push(fault),
    clearFaults: () => {
      faults.length = 0
    },
    onAnswer: undefined,
    close: server.close,
  }
  return proxy
}

function errorAnswer(status: number, code: string, message: string): ProxyAnswer {
  const requestId = crypto.randomUUID()
  return {
    status,
    headers: { 'content-type': 'text/xml;charset=UTF-8' },
    body:
      `<?xml version="1.0" encoding="UTF-8"?>\n<Response><Errors><Error><Code>${code}</Code>` +
      `<Message>${escapeXml(message)}</Message></Error></Errors><RequestID>${requestId}</RequestID></Response>`,
  }
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;')
}

// A query to moto on the proxy's own account. moto picks service and region
// from the credential scope of the Authorization header (it does not check
// the signature unless asked to), so the caller's header is reused.
async function sideCall(
  target: string,
  authorization: string | undefined,
  params: Record<string, string>,
): Promise<string> {
  const body = Buffer.from(new URLSearchParams({ Version: '2016-11-15', ...params }).toString())
  const answer = await forward(
    target,
    'POST',
    '/',
    {
      'content-type': 'application/x-www-form-urlencoded; charset=utf-8',
      ...(authorization === undefined ? {} : { authorization }),
    },
    body,
  )
  return answer.body.toString('utf8')
}

async function markBlackholes(
  target: string,
  authorization: string | undefined,
  body: Buffer,
): Promise<string> {
  const xml = body.toString('utf8')
  const enis = new Set(
    [
      ...(await sideCall(target, authorization, { Action: 'DescribeNetworkInterfaces' })).matchAll(
        /<networkInterfaceId>([^<]+)<\/networkInterfaceId>/g,
      ),
    ].map((m) => m[1]),
  )
  const terminated = new Set(
    [
      ...(
        await sideCall(target, authorization, {
          Action: 'DescribeInstances',
          'Filter.1.Name': 'instance-state-name',
          'Filter.1.Value.1': 'terminated',
        })
      ).matchAll(/<instanceId>([^<]+)<\/instanceId>/g),
    ].map((m) => m[1]),
  )
  return xml.replace(/<routeSet>([\s\S]*?)<\/routeSet>/g, (routeSet) =>
    routeSet.replace(/<item>([\s\S]*?)<\/item>/g, (item) => {
      const eni = /<networkInterfaceId>([^<]+)</.exec(item)?.[1]
      const instance = /<instanceId>([^<]+)</.exec(item)?.[1]
      const gone =
        (eni !== undefined && !enis.has(eni)) ||
        (instance !== undefined && terminated.has(instance))
      return gone ? item.replace('<state>active</state>', '<state>blackhole</state>') : item
    }),
  )
}

/** What {@link seedEc2} created in moto. */
export interface Ec2World {
  readonly region: string
  readonly vpcId: string
  readonly subnetId: string
  readonly instanceId: string
  /** The instance's primary network interface. */
  readonly eni: string
  /** Its private address (the host's interface address). */
  readonly privateIp: string
  /** The VPC's main route table. */
  readonly mainRouteTableId: string
  /** The availability zone (for the metadata endpoint). */
  readonly availabilityZone: string
}

/**
 * Creates a VPC (198.51.100.0/24), a subnet (198.51.100.0/26) and one instance
 * with `privateIp` in moto, through the plain EC2 Query API (no SDK needed).
 */
export async function seedEc2(
  moto: { readonly endpoint: string },
  options: { region?: string; privateIp?: string } = {},
): Promise<Ec2World> {
  const region = options.region ?? 'us-east-1'
  const privateIp = options.privateIp ?? '198.51.100.10'
  const availabilityZone = `${region}a`
  // moto reads service and region from the credential scope; the signature is not checked.
  const auth = `AWS4-HMAC-SHA256 Credential=testing/20260101/${region}/ec2/aws4_request, SignedHeaders=host, Signature=0`
  const call = async (params: Record<string, string>): Promise<string> => {
    const xml = await sideCall(moto.endpoint, auth, params)
    if (xml.includes('<Errors>')) throw new Error(`moto ${params.Action}: ${xml}`)
    return xml
  }
  const first = (xml: string, tag: string): string => {
    const m = new RegExp(`<${tag}>([^<]+)</${tag}>`).exec(xml)
    if (m?.[1] === undefined) throw new Error(`no <${tag}> in ${xml.slice(0, 500)}`)
    return m[1]
  }
  const vpcId = first(await call({ Action: 'CreateVpc', CidrBlock: '198.51.100.0/24' }), 'vpcId')
  const subnetId = first(
    await call({
      Action: 'CreateSubnet',
      VpcId: vpcId,
      CidrBlock: '198.51.100.0/26',
      AvailabilityZone: availabilityZone,
    }),
    'subnetId',
  )
  const run = await call({
    Action: 'RunInstances',
    ImageId: 'ami-12c6146b',
    MinCount: '1',
    MaxCount: '1',
    SubnetId: subnetId,
    PrivateIpAddress: privateIp,
  })
  const instanceId = first(run, 'instanceId')
  const eni = first(run, 'networkInterfaceId')
  const mainRouteTableId = first(
    await call({
      Action: 'DescribeRouteTables',
      'Filter.1.Name': 'association.main',
      'Filter.1.Value.1': 'true',
      'Filter.2.Name': 'vpc-id',
      'Filter.2.Value.1': vpcId,
    }),
    'routeTableId',
  )
  return { region, vpcId, subnetId, instanceId, eni, privateIp, mainRouteTableId, availabilityZone }
}

/** The routes of a table in moto, as `destination -> target` lines (local route left out). */
export async function listRoutes(
  moto: { readonly endpoint: string },
  routeTableId: string,
  region = 'us-east-1',
): Promise<string[]> {
  const auth = `AWS4-HMAC-SHA256 Credential=testing/20260101/${region}/ec2/aws4_request, SignedHeaders=host, Signature=0`
  const xml = await sideCall(moto.endpoint, auth, {
    Action: 'DescribeRouteTables',
    'RouteTableId.1': routeTableId,
  })
  const routeSet = /<routeSet>([\s\S]*?)<\/routeSet>/.exec(xml)?.[1] ?? ''
  return [...routeSet.matchAll(/<item>([\s\S]*?)<\/item>/g)]
    .map((m) => m[1] ?? '')
    .filter((item) => item.includes('<origin>CreateRoute</origin>'))
    .map((item) => {
      const dest = /<destinationCidrBlock>([^<]+)</.exec(item)?.[1] ?? '?'
      const target = /<(?:networkInterfaceId|instanceId|gatewayId)>([^<]+)</.exec(item)?.[1] ?? '?'
      return `${dest} -> ${target}`
    })
}
