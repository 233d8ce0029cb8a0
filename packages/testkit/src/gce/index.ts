/**
 * A local Google Compute Engine endpoint for the gce backend's tests: the
 * Compute REST subset the backend uses (routes insert/get/delete/list,
 * globalOperations get/wait, instances get) with the API's real JSON shapes
 * and error bodies, and a metadata server (`Metadata-Flavor: Google`) that
 * also issues the instance service account's access tokens, so Application
 * Default Credentials work as on a VM (point `GCE_METADATA_HOST` at it). API
 * calls without a token it issued are refused with 401.
 */
import type { IncomingMessage, ServerResponse } from 'node:http'
import { startLocalServer } from '../http/index.js'

/** The prefix of every selfLink, as the API writes them. */
export const COMPUTE_BASE = 'https://www.googleapis.com/compute/v1/'

/** A route as the API stores it (a subset of the real resource). */
export interface GceRoute {
  kind: 'compute#route'
  id: string
  creationTimestamp: string
  name: string
  description?: string
  network: string
  destRange: string
  priority: number
  nextHopInstance?: string
  nextHopGateway?: string
  nextHopIp?: string
  tags?: string[]
  selfLink: string
  routeType?: string
}

/** A request to the Compute API, as received. */
export interface GceRequest {
  readonly method: string
  /** Path without the query, e.g. `/compute/v1/projects/p/global/routes`. */
  readonly path: string
  readonly query: Readonly<Record<string, string>>
  /** Parsed JSON body, if any. */
  readonly body: unknown
  /** The `Authorization` header. */
  readonly authorization: string | undefined
  /** The status answered. */
  status: number
}

/** An error the endpoint answers instead of doing the call. */
export interface GceFault {
  readonly method: string
  /** Matched against the path. */
  readonly path: RegExp
  readonly status: number
  readonly reason: string
  readonly message: string
  /** How many times; default once. */
  times?: number
}

/** Options of {@link startGceEmulator}. */
export interface GceEmulatorOptions {
  readonly project?: string
  readonly projectNumber?: string
  readonly zone?: string
  readonly instanceName?: string
  readonly network?: string
  /** Routes the project may hold; an insert beyond fails its operation with `QUOTA_EXCEEDED`. */
  routeQuota?: number | undefined
  /** How many operation polls (get or wait) it takes to see `DONE` (inserts and deletes answer `RUNNING`). Default 1; 0: `DONE` at once. */
  pendingPolls?: number | undefined
}

/** A running emulator. */
export interface GceEmulator {
  /** `http://127.0.0.1:<port>`. */
  readonly url: string
  /** `127.0.0.1` (the client's `apiEndpoint`). */
  readonly host: string
  /** The port (the client's `port`). */
  readonly port: number
  /** `127.0.0.1:<port>`: the value for `GCE_METADATA_HOST`. */
  readonly metadataHost: string
  readonly project: string
  readonly zone: string
  readonly instanceName: string
  readonly network: string
  /** selfLink of this instance. */
  readonly instanceLink: string
  /** selfLink of the network. */
  readonly networkLink: string
  /** Compute API requests, in order. */
  readonly requests: GceRequest[]
  /** Metadata paths asked for (under `/computeMetadata/v1`), in order. */
  readonly metadataRequests: string[]
  /** Metadata values served, by path; delete one to make it 404. */
  readonly metadata: Record<string, string>
  /** Changeable options. */
  readonly options: GceEmulatorOptions
  /** The routes, by name. */
  readonly routes: Map<string, GceRoute>
  /** Adds a route as if made earlier (by anyone). */
  addRoute(route: {
    name: string
    destRange: string
    nextHopInstance?: string
    nextHopGateway?: string
    network?: string
    priority?: number
  }): GceRoute
  /** Adds another instance; returns its selfLink. */
  addInstance(name: string, zone?: string): string
  /** Answers a matching request with an API error. */
  fail(fault: GceFault): void
  /** Makes the operation of the next matching call end in an error. */
  failOperation(match: { method: string; path: RegExp; code: string; message: string }): void
  close(): Promise<void>
}

interface Operation {
  kind: 'compute#operation'
  id: string
  name: string
  operationType: string
  targetLink: string
  status: 'PENDING' | 'RUNNING' | 'DONE'
  progress: number
  insertTime: string
  startTime: string
  endTime?: string
  selfLink: string
  error?: { errors: { code: string; message: string }[] }
}

let nextId = 1_000_000_000_000

/** Starts the emulator on 127.0.0.1 with a free port. */
export async function startGceEmulator(options: GceEmulatorOptions = {}): Promise<GceEmulator> {
  const project = options.project ?? 'flannel-test'
  const projectNumber = options.projectNumber ?? '123456789012'
  const zone = options.zone ?? 'us-central1-b'
  const instanceName = options.instanceName ?? 'node-1'
  const network = options.network ?? 'flannel-net'
  const projectLink = `${COMPUTE_BASE}projects/${project}`
  const networkLink = `${projectLink}/global/networks/${network}`
  const instanceLinkOf = (name: string, z = zone): string =>
    `${projectLink}/zones/${z}/instances/${name}`
  const instances = new Map<string, { name: string; zone: string }>([
    [`${zone}/${instanceName}`, { name: instanceName, zone }],
  ])
  const routes = new Map<string, GceRoute>()
  const operations = new Map<
    string,
    { op: Operation; pending: number; apply: () => Operation['error'] | undefined }
  >()
  const requests: GceRequest[] = []
  const metadataRequests: string[] = []
  const faults: GceFault[] = []
  const opFaults: { method: string; path: RegExp; code: string; message: string }[] = []
  const tokens = new Set<string>()
  const metadata: Record<string, string> = {
    '/instance/network-interfaces/0/network': `projects/${projectNumber}/networks/${network}`,
    '/project/project-id': project,
    '/project/numeric-project-id': projectNumber,
    '/instance/hostname': `${instanceName}.${zone}.c.${project}.internal`,
    '/instance/name': instanceName,
    '/instance/zone': `projects/${projectNumber}/zones/${zone}`,
    '/instance/service-accounts/default/email': `${projectNumber}-compute@developer.gserviceaccount.com`,
    '/instance/service-accounts/default/scopes': 'https://www.googleapis.com/auth/compute\n',
  }

  const now = (): string => new Date().toISOString()
  const makeRoute = (r: Parameters<GceEmulator['addRoute']>[0]): GceRoute => ({
    kind: 'compute#route',
    id: String(nextId++),
    creationTimestamp: now(),
    name: r.name,
    network: r.network ?? networkLink,
    destRange: r.destRange,
    priority: r.priority ?? 1000,
    ...(r.nextHopInstance === undefined ? {} : { nextHopInstance: r.nextHopInstance }),
    ...(r.nextHopGateway === undefined ? {} : { nextHopGateway: r.nextHopGateway }),
    selfLink: `${projectLink}/global/routes/${r.name}`,
    routeType: 'STATIC',
  })

  const startOperation = (
    type: string,
    targetLink: string,
    apply: () => Operation['error'] | undefined,
    method: string,
    path: string,
  ): Operation => {
    const name = `operation-${Date.now()}-${Math.random().toString(16).slice(2, 14)}`
    const op: Operation = {
      kind: 'compute#operation',
      id: String(nextId++),
      name,
      operationType: type,
      targetLink,
      status: 'RUNNING',
      progress: 0,
      insertTime: now(),
      startTime: now(),
      selfLink: `${projectLink}/global/operations/${name}`,
    }
    const fault = opFaults.findIndex((f) => f.method === method && f.path.test(path))
    const failed = fault >= 0 ? opFaults.splice(fault, 1)[0] : undefined
    const entry = {
      op,
      pending: options.pendingPolls ?? 1,
      apply: failed ? () => ({ errors: [{ code: failed.code, message: failed.message }] }) : apply,
    }
    operations.set(name, entry)
    if (entry.pending === 0) finish(entry)
    return { ...op }
  }
  const finish = (entry: { op: Operation; apply: () => Operation['error'] | undefined }): void => {
    if (entry.op.status === 'DONE') return
    const error = entry.apply()
    entry.op.status = 'DONE'
    entry.op.progress = 100
    entry.op.endTime = now()
    if (error !== undefined) entry.op.error = error
  }
  // get and wait alike: RUNNING for `pendingPolls` polls (a real wait returns
  // RUNNING when its own deadline passes first), then DONE.
  const poll = (name: string): Operation | undefined => {
    const entry = operations.get(name)
    if (entry === undefined) return undefined
    if (entry.op.status !== 'DONE') {
      if (entry.pending <= 1) finish(entry)
      else entry.pending -= 1
    }
    return { ...entry.op }
  }

  const server = await startLocalServer((req, res, raw) => {
    const url = new URL(req.url ?? '/', 'http://x')
    if (url.pathname.startsWith('/computeMetadata/v1')) return serveMetadata(req, res, url)
    let body: unknown
    if (raw.length > 0) {
      try {
        body = JSON.parse(raw.toString('utf8'))
      } catch {
        body = raw.toString('utf8')
      }
    }
    const record: GceRequest = {
      method: req.method ?? '',
      path: url.pathname,
      query: Object.fromEntries(url.searchParams),
      body,
      authorization: req.headers.authorization,
      status: 0,
    }
    requests.push(record)
    const send = (status: number, json: unknown): void => {
      record.status = status
      res.writeHead(status, { 'content-type': 'application/json; charset=UTF-8' })
      res.end(JSON.stringify(json))
    }
    const apiError = (status: number, reason: string, message: string): void =>
      send(status, {
        error: { code: status, message, errors: [{ message, domain: 'global', reason }] },
      })

    const bearer = /^Bearer (.+)$/.exec(record.authorization ?? '')?.[1]
    if (bearer === undefined || !tokens.has(bearer)) {
      return apiError(
        401,
        'authError',
        'Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or other valid authentication credential.',
      )
    }
    const fault = faults.find(
      (f) => f.method === record.method && f.path.test(record.path) && (f.times ?? 1) > 0,
    )
    if (fault !== undefined) {
      fault.times = (fault.times ?? 1) - 1
      return apiError(fault.status, fault.reason, fault.message)
    }

    const prefix = `/compute/v1/projects/${project}`
    const p = record.path.startsWith(prefix) ? record.path.slice(prefix.length) : undefined
    let m: RegExpExecArray | null
    if (p === undefined) {
      return apiError(
        403,
        'forbidden',
        `Permission denied on resource project ${record.path.split('/')[4] ?? ''}.`,
      )
    }
    if (p === '/global/routes' && record.method === 'GET') {
      const all = [...routes.values()].sort((a, b) => a.name.localeCompare(b.name))
      const max = Math.min(Number(record.query.maxResults ?? 500) || 500, 500)
      const start = Number(record.query.pageToken ?? 0) || 0
      const page = all.slice(start, start + max)
      const next = start + max < all.length ? String(start + max) : undefined
      return send(200, {
        kind: 'compute#routeList',
        id: `projects/${project}/global/routes`,
        items: page,
        selfLink: `${projectLink}/global/routes`,
        ...(next === undefined ? {} : { nextPageToken: next }),
      })
    }
    if (p === '/global/routes' && record.method === 'POST') {
      const r = body as Partial<GceRoute> | undefined
      if (typeof r?.name !== 'string' || !/^[a-z]([-a-z0-9]*[a-z0-9])?$/.test(r.name)) {
        return apiError(
          400,
          'invalid',
          `Invalid value for field 'resource.name': '${String(r?.name)}'. Must be a match of regex '(?:[a-z](?:[-a-z0-9]{0,61}[a-z0-9])?)'`,
        )
      }
      if (typeof r.destRange !== 'string' || typeof r.network !== 'string') {
        return apiError(400, 'required', 'Required field missing: destRange or network')
      }
      if (routes.has(r.name)) {
        return apiError(
          409,
          'alreadyExists',
          `The resource 'projects/${project}/global/routes/${r.name}' already exists`,
        )
      }
      const name = r.name
      const created: Parameters<GceEmulator['addRoute']>[0] = {
        name,
        destRange: r.destRange,
        network: r.network,
        ...(r.priority === undefined ? {} : { priority: Number(r.priority) }),
        ...(r.nextHopInstance === undefined ? {} : { nextHopInstance: r.nextHopInstance }),
      }
      const op = startOperation(
        'insert',
        `${projectLink}/global/routes/${name}`,
        () => {
          const quota = options.routeQuota
          if (quota !== undefined && routes.size >= quota) {
            return {
              errors: [
                {
                  code: 'QUOTA_EXCEEDED',
                  message: `Quota 'ROUTES' exceeded.  Limit: ${quota}.0 globally.`,
                },
              ],
            }
          }
          routes.set(name, makeRoute(created))
          return undefined
        },
        record.method,
        record.path,
      )
      return send(200, op)
    }
    if ((m = /^\/global\/routes\/([^/]+)$/.exec(p)) !== null) {
      const name = decodeURIComponent(m[1] ?? '')
      const route = routes.get(name)
      const missing = (): void =>
        apiError(
          404,
          'notFound',
          `The resource 'projects/${project}/global/routes/${name}' was not found`,
        )
      if (record.method === 'GET') return route === undefined ? missing() : send(200, route)
      if (record.method === 'DELETE') {
        if (route === undefined) return missing()
        const op = startOperation(
          'delete',
          route.selfLink,
          () => {
            routes.delete(name)
            return undefined
          },
          record.method,
          record.path,
        )
        return send(200, op)
      }
    }
    if ((m = /^\/global\/operations\/([^/]+?)(\/wait)?$/.exec(p)) !== null) {
      const wait = m[2] !== undefined
      if ((wait && record.method === 'POST') || (!wait && record.method === 'GET')) {
        const op = poll(decodeURIComponent(m[1] ?? ''))
        return op === undefined
          ? apiError(
              404,
              'notFound',
              `The resource 'projects/${project}/global/operations/${m[1] ?? ''}' was not found`,
            )
          : send(200, op)
      }
    }
    if (
      (m = /^\/zones\/([^/]+)\/instances\/([^/]+)$/.exec(p)) !== null &&
      record.method === 'GET'
    ) {
      const [z, name] = [m[1] ?? '', decodeURIComponent(m[2] ?? '')]
      const inst = instances.get(`${z}/${name}`)
      if (inst === undefined) {
        return apiError(
          404,
          'notFound',
          `The resource 'projects/${project}/zones/${z}/instances/${name}' was not found`,
        )
      }
      return send(200, {
        kind: 'compute#instance',
        id: String(nextId++),
        creationTimestamp: now(),
        name,
        zone: `${projectLink}/zones/${z}`,
        machineType: `${projectLink}/zones/${z}/machineTypes/e2-small`,
        status: 'RUNNING',
        canIpForward: true,
        networkInterfaces: [
          {
            kind: 'compute#networkInterface',
            name: 'nic0',
            network: networkLink,
            networkIP: '10.128.0.2',
          },
        ],
        selfLink: instanceLinkOf(name, z),
      })
    }
    return apiError(404, 'notFound', `No such method: ${record.method} ${record.path}`)
  })

  function serveMetadata(req: IncomingMessage, res: ServerResponse, url: URL): void {
    const path = url.pathname.slice('/computeMetadata/v1'.length) || '/'
    metadataRequests.push(path)
    const reply = (status: number, text: string, type = 'application/text'): void => {
      res.writeHead(status, { 'metadata-flavor': 'Google', 'content-type': type })
      res.end(text)
    }
    if (req.headers['metadata-flavor'] !== 'Google') {
      return reply(403, 'Missing Metadata-Flavor:Google header.', 'text/html')
    }
    if (path === '/instance' || path === '/instance/') return reply(200, 'hostname\nid\nzone\n')
    if (path === '/instance/service-accounts/default/token') {
      const token = `ya29.test-${Math.random().toString(36).slice(2)}`
      tokens.add(token)
      return reply(
        200,
        JSON.stringify({ access_token: token, expires_in: 3599, token_type: 'Bearer' }),
        'application/json',
      )
    }
    const value = metadata[path]
    return value === undefined ? reply(404, 'Not Found', 'text/html') : reply(200, value)
  }

  return {
    url: server.url,
    host: '127.0.0.1',
    port: server.port,
    metadataHost: `127.0.0.1:${server.port}`,
    project,
    zone,
    instanceName,
    network,
    instanceLink: instanceLinkOf(instanceName),
    networkLink,
    requests,
    metadataRequests,
    metadata,
    options,
    routes,
    addRoute: (r) => {
      const route = makeRoute(r)
      routes.set(r.name, route)
      return route
    },
    addInstance: (name, z = zone) => {
      instances.set(`${z}/${name}`, { name, zone: z })
      return instanceLinkOf(name, z)
    },
    fail: (f) => faults.push(f),
    failOperation: (f) => opFaults.push(f),
    close: server.close,
  }
}
