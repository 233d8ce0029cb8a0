import { AbortError } from '@flannel/core'
import { sleep } from '@flannel/core/registry'
import { GceApiError, GceAuthError, GceOperationError, GceOperationTimeoutError } from './errors.js'

/** A Compute route, as the SDK returns it (the fields used here). */
export interface Route {
  name?: string | null
  network?: string | null
  destRange?: string | null
  priority?: number | null
  nextHopInstance?: string | null
  nextHopGateway?: string | null
  nextHopIp?: string | null
  tags?: string[] | null
  description?: string | null
}

/** A Compute operation, as the SDK returns it (the fields used here). */
interface Operation {
  name?: string | null
  status?: string | number | null
  error?: { errors?: { code?: string | null; message?: string | null }[] | null } | null
}

// The value of Operation.Status.DONE when enums come back as numbers.
const DONE_ENUM = 2104194

type Cancellable<T> = Promise<T> & { cancel?: () => void }

// The slice of the SDK clients this backend calls; keeps the SDK's large
// overloaded types out of our code.
interface RoutesClient {
  get(req: { project: string; route: string }): Cancellable<[Route]>
  insert(req: {
    project: string
    routeResource: Route
  }): Cancellable<[{ latestResponse?: Operation }]>
  delete(req: { project: string; route: string }): Cancellable<[{ latestResponse?: Operation }]>
  list(
    req: { project: string; maxResults: number; pageToken?: string },
    opts: { autoPaginate: false },
  ): Cancellable<[Route[], unknown, { nextPageToken?: string | null } | undefined]>
  close(): Promise<void>
}
interface GlobalOperationsClient {
  wait(req: { project: string; operation: string }): Cancellable<[Operation]>
  close(): Promise<void>
}
interface InstancesClient {
  get(req: {
    project: string
    zone: string
    instance: string
  }): Cancellable<
    [{ selfLink?: string | null; networkInterfaces?: { network?: string | null }[] | null }]
  >
  close(): Promise<void>
}

/** Settings of {@link GceApi}. */
export interface GceApiSettings {
  readonly project: string
  /** Options for every SDK client (endpoint, auth), `fallback` (REST) already set. */
  readonly clientOptions: Readonly<Record<string, unknown>>
  /** How long to wait for one operation. */
  readonly operationTimeoutMs: number
  /** Pause between operation polls that found it still running. */
  readonly pollIntervalMs: number
}

/**
 * The Compute calls of the gce backend over `@google-cloud/compute` with its
 * REST transport; the SDK is imported on first use. Every call takes an
 * AbortSignal; errors become {@link GceApiError} / {@link GceAuthError}.
 */
export class GceApi {
  private clients:
    | Promise<{
        routes: RoutesClient
        operations: GlobalOperationsClient
        instances: InstancesClient
      }>
    | undefined

  constructor(private readonly settings: GceApiSettings) {}

  /** Closes the SDK clients this object created. */
  async close(): Promise<void> {
    const clients = await this.clients?.catch(() => undefined)
    this.clients = undefined
    if (clients === undefined) return
    await Promise.all([
      clients.routes.close(),
      clients.operations.close(),
      clients.instances.close(),
    ]).catch(() => undefined)
  }

  /** instances.get; undefined on 404. */
  async getInstance(
    zone: string,
    instance: string,
    signal?: AbortSignal,
  ): Promise<
    | { selfLink?: string | null; networkInterfaces?: { network?: string | null }[] | null }
    | undefined
  > {
    const { instances } = await this.load()
    try {
      const [res] = await this.call(
        'instances.get',
        () => instances.get({ project: this.settings.project, zone, instance }),
        signal,
      )
      return res
    } catch (err) {
      if (err instanceof GceApiError && err.httpStatus === 404) return undefined
      throw err
    }
  }

  /** routes.get; undefined on 404. */
  async getRoute(name: string, signal?: AbortSignal): Promise<Route | undefined> {
    const { routes } = await this.load()
    try {
      const [route] = await this.call(
        'routes.get',
        () => routes.get({ project: this.settings.project, route: name }),
        signal,
      )
      return route
    } catch (err) {
      if (err instanceof GceApiError && err.httpStatus === 404) return undefined
      throw err
    }
  }

  /** routes.list, every page. */
  async listRoutes(signal?: AbortSignal): Promise<Route[]> {
    const { routes } = await this.load()
    const all: Route[] = []
    let pageToken: string | undefined
    do {
      const [items, , res] = await this.call(
        'routes.list',
        () =>
          routes.list(
            {
              project: this.settings.project,
              maxResults: 500,
              ...(pageToken === undefined ? {} : { pageToken }),
            },
            { autoPaginate: false },
          ),
        signal,
      )
      all.push(...items)
      pageToken = res?.nextPageToken ?? undefined
    } while (pageToken !== undefined && pageToken !== '')
    return all
  }

  /**
   * routes.insert, then waits for its operation. `started` receives the
   * operation's name as soon as the API accepted the insert.
   */
  async insertRoute(
    route: Route,
    signal?: AbortSignal,
    started?: (operation: string) => void,
  ): Promise<void> {
    const { routes } = await this.load()
    const [op] = await this.call(
      'routes.insert',
      () => routes.insert({ project: this.settings.project, routeResource: route }),
      signal,
    )
    if (op.latestResponse?.name) started?.(op.latestResponse.name)
    await this.waitFor(op.latestResponse, signal)
  }

  /** Waits for a running operation by name (its error, if any, is thrown). */
  async waitOperation(name: string, signal?: AbortSignal): Promise<void> {
    await this.waitFor({ name, status: 'RUNNING' }, signal)
  }

  /** routes.delete, then waits for its operation; false when the route was already gone (404). */
  async deleteRoute(name: string, signal?: AbortSignal): Promise<boolean> {
    const { routes } = await this.load()
    try {
      const [op] = await this.call(
        'routes.delete',
        () => routes.delete({ project: this.settings.project, route: name }),
        signal,
      )
      await this.waitFor(op.latestResponse, signal)
      return true
    } catch (err) {
      if (err instanceof GceApiError && err.httpStatus === 404) return false
      throw err
    }
  }

  /** Waits (globalOperations.wait, repeated) until the operation is DONE; its error becomes a {@link GceOperationError}. */
  private async waitFor(first: Operation | undefined, signal?: AbortSignal): Promise<void> {
    const { operations } = await this.load()
    let op = first ?? {}
    const name = op.name ?? ''
    const deadline = Date.now() + this.settings.operationTimeoutMs
    while (!isDone(op)) {
      if (name === '')
        throw new GceApiError({
          method: 'globalOperations.wait',
          detail: 'operation without a name',
        })
      if (Date.now() >= deadline)
        throw new GceOperationTimeoutError(name, this.settings.operationTimeoutMs)
      const [next] = await this.call(
        'globalOperations.wait',
        () => operations.wait({ project: this.settings.project, operation: name }),
        signal,
      )
      op = next
      if (!isDone(op))
        await sleep(
          Math.min(this.settings.pollIntervalMs, Math.max(0, deadline - Date.now())),
          signal,
        )
    }
    const errors = op.error?.errors ?? []
    if (errors.length > 0) {
      throw new GceOperationError(
        name,
        errors.map((e) => ({ code: e.code ?? undefined, message: e.message ?? undefined })),
      )
    }
  }

  private load(): Promise<{
    routes: RoutesClient
    operations: GlobalOperationsClient
    instances: InstancesClient
  }> {
    this.clients ??= this.createClients()
    return this.clients
  }

  // One credential lookup for all three clients, done before any API call, so
  // missing credentials fail here (as GceAuthError) and not inside the SDK's
  // per-method setup (which would leave rejected promises behind).
  private async createClients(): Promise<{
    routes: RoutesClient
    operations: GlobalOperationsClient
    instances: InstancesClient
  }> {
    const sdk = await import('@google-cloud/compute')
    type Ctor<T> = new (o: Record<string, unknown>) => T
    let opts: Record<string, unknown> = {
      ...this.settings.clientOptions,
      projectId: this.settings.project,
    }
    const routes = new (sdk.RoutesClient as unknown as Ctor<RoutesClient>)(opts)
    if (!('authClient' in opts)) {
      const auth = (routes as unknown as { auth: { getClient(): Promise<unknown> } }).auth
      try {
        opts = { ...opts, authClient: await auth.getClient() }
      } catch (err) {
        await routes.close().catch(() => undefined)
        throw mapError('auth', err)
      }
    }
    return {
      routes,
      operations: new (sdk.GlobalOperationsClient as unknown as Ctor<GlobalOperationsClient>)(opts),
      instances: new (sdk.InstancesClient as unknown as Ctor<InstancesClient>)(opts),
    }
  }

  private async call<T>(
    method: string,
    run: () => Cancellable<T>,
    signal?: AbortSignal,
  ): Promise<T> {
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
    const pending = run()
    if (signal === undefined)
      return pending.catch((err: unknown) => Promise.reject(mapError(method, err)))
    return new Promise<T>((resolve, reject) => {
      const onAbort = (): void => {
        pending.cancel?.()
        reject(new AbortError(undefined, { cause: signal.reason }))
      }
      signal.addEventListener('abort', onAbort, { once: true })
      pending.then(
        (value) => {
          signal.removeEventListener('abort', onAbort)
          resolve(value)
        },
        (err: unknown) => {
          signal.removeEventListener('abort', onAbort)
          reject(mapError(method, err))
        },
      )
    })
  }
}

function isDone(op: Operation): boolean {
  return op.status === 'DONE' || op.status === DONE_ENUM
}

// The REST transport rejects with a GaxiosError carrying the HTTP answer, or
// with a GoogleError carrying a gRPC code; credential lookups reject with
// plain errors. All become GceApiError / GceAuthError.
function mapError(method: string, err: unknown): unknown {
  if (err instanceof AbortError) return err
  const e = err as {
    message?: string
    status?: number
    code?: number | string
    response?: { status?: number; data?: unknown }
  }
  let status = e.status ?? e.response?.status
  if (status === undefined && typeof e.code === 'number')
    status = GRPC_TO_HTTP[e.code] ?? (e.code >= 100 ? e.code : undefined)
  const body = parseBody(e.response?.data) ?? parseBody(e.message)
  const apiError = (
    body as { error?: { message?: string; errors?: { reason?: string }[] } } | undefined
  )?.error
  const details = {
    method,
    httpStatus: status,
    reason: apiError?.errors?.[0]?.reason,
    detail: apiError?.message ?? e.message ?? String(err),
  }
  const noCredentials =
    status === undefined && /default credentials|credential|authenticat/i.test(e.message ?? '')
  return status === 401 || status === 403 || noCredentials
    ? new GceAuthError(details, { cause: err })
    : new GceApiError(details, { cause: err })
}

const GRPC_TO_HTTP: Record<number, number> = {
  3: 400,
  5: 404,
  6: 409,
  7: 403,
  8: 429,
  13: 500,
  14: 503,
  16: 401,
}

function parseBody(value: unknown): unknown {
  if (typeof value === 'object' && value !== null) return value
  if (typeof value !== 'string' || !value.trimStart().startsWith('{')) return undefined
  try {
    return JSON.parse(value)
  } catch {
    return undefined
  }
}
