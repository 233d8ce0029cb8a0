import {
  ConfigError,
  defineBackend,
  preparedWithUndo,
  registerPrepared,
  RouteLimitError,
  silentLogger,
  throwIfAborted,
  type Backend,
  type BackendContext,
  type BackendFactory,
  type Ip4Net,
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type RegisterOptions,
  type UndoStep,
} from '@flannel/core'
import { GceApi, type Route } from './api.js'
import { GceApiError, GceDiscoveryError, GceOperationError } from './errors.js'
import { metadataEndpoint, readMetadata } from './metadata.js'
import { GceNetwork } from './network.js'
import { ROUTE_PRIORITY, resourcePath, routeName } from './plan.js'

/** The API base flanneld used for links it built itself. */
const COMPUTE_BASE = 'https://www.googleapis.com/compute/v1/'

/** Options of {@link GceBackend}; everything is optional. */
export interface GceOptions {
  /** Project id; skips the metadata lookup. */
  readonly project?: string | undefined
  /** Zone; skips the metadata lookup. */
  readonly zone?: string | undefined
  /** Instance name; skips the metadata lookup (flanneld: the hostname up to the first dot). */
  readonly instanceName?: string | undefined
  /** Network name; skips the metadata lookup. */
  readonly network?: string | undefined
  /** Metadata server; else env `GCE_METADATA_HOST`, else `http://169.254.169.254`. */
  readonly metadataEndpoint?: string | undefined
  /** Timeout of one metadata request. Default 5000 ms. */
  readonly metadataTimeoutMs?: number | undefined
  /**
   * Compute API endpoint: a host (`compute.googleapis.com`) or a URL; an
   * `http://host:port` URL selects plain HTTP (e.g. a local emulator).
   */
  readonly apiEndpoint?: string | undefined
  /**
   * A google-auth-library auth client. Default: Application Default
   * Credentials (on GCE: the instance's service account via the metadata server).
   */
  readonly authClient?: unknown
  /** More options for the SDK clients (e.g. `keyFilename`, `credentials`). */
  readonly clientOptions?: Readonly<Record<string, unknown>> | undefined
  /** How long to wait for one operation. Default 100000 ms (flanneld: 100 polls, 1 s apart). */
  readonly operationTimeoutMs?: number | undefined
  /** Pause between polls of a running operation. Default 1000 ms. */
  readonly pollIntervalMs?: number | undefined
  /** Remove `flannel-` routes that no live lease owns while the network runs. Default true. */
  readonly collectStaleRoutes?: boolean | undefined
  /**
   * Pause between a lease change and the collection it triggers, so that a
   * lease acquired meanwhile (and the route its host just made) counts as
   * live. Default 5000 ms.
   */
  readonly collectDelayMs?: number | undefined
  /** Environment for `GCE_METADATA_HOST`. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
}

interface Discovered {
  readonly project: string
  readonly zone: string
  readonly instanceName: string
  readonly networkName: string
}

/**
 * flannel's `gce` backend: each host adds a route for its own subnet, with its
 * instance as next hop, to the VPC network (spec: backends.md section 6). The
 * lease carries no `BackendType` and no backend data.
 *
 * prepare: metadata (network, project, instance, zone) ->
 * instances.get -> lease -> routes.get `flannel-<a-b-c-d-len>`: right next hop
 * kept; other next hop deleted (operation waited) -> routes.insert (operation
 * waited). A failure restores a deleted route and releases the lease. The
 * network's `run` removes `flannel-` routes of subnets no live lease owns.
 */
export class GceBackend implements Backend {
  readonly type = 'gce'
  private readonly logger: Logger

  constructor(
    private readonly ctx: BackendContext,
    private readonly options: GceOptions = {},
  ) {
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'gce' })
  }

  /**
   * Metadata and the instance, before any lease; `activate` then puts the
   * own route in place. On failure the API clients are closed and nothing is left.
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    const signal = opts.signal
    throwIfAborted(signal)
    const publicIP = this.ctx.extIface.extAddr ?? this.ctx.extIface.ifaceAddr ?? '0.0.0.0'
    const network = config.network
    if (network === undefined) {
      throw new ConfigError(
        'please define a correct Network parameter in the flannel config',
        'Network',
        undefined,
      )
    }
    const where = await this.discover(signal)
    const makeApi = (): GceApi => this.api(where.project)
    const api = makeApi()
    try {
      const instance = await api
        .getInstance(where.zone, where.instanceName, signal)
        .catch((err: unknown) => {
          throw context(err, 'error getting instance from compute service')
        })
      if (instance?.selfLink == null) {
        throw new GceDiscoveryError(
          `error getting instance from compute service: instance ${where.instanceName} not found in ${where.project}/${where.zone}`,
        )
      }
      const instanceLink = instance.selfLink
      const nic = instance.networkInterfaces?.find((n) =>
        n.network?.endsWith(`/networks/${where.networkName}`),
      )
      const networkLink =
        nic?.network ??
        `${COMPUTE_BASE}projects/${where.project}/global/networks/${where.networkName}`
      this.logger.info({ ...where, instanceLink }, 'found the instance')
      return preparedWithUndo({
        attrs: { publicIP },
        api,
        reopen: makeApi,
        close: (a) => a.close(),
        logger: this.logger,
        activate: async (lease, { api, undo, signal }) => {
          await this.ensureRoute(
            api,
            where.project,
            lease.subnet,
            networkLink,
            instanceLink,
            undo,
            signal,
          )
          return new GceNetwork({
            lease,
            mtu: this.ctx.extIface.mtu,
            network,
            networkLink,
            makeApi,
            collect: this.options.collectStaleRoutes ?? true,
            collectDelayMs: this.options.collectDelayMs ?? 5000,
            logger: this.logger,
          })
        },
      })
    } catch (error) {
      await api.close()
      throw error
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates; on
   * failure the lease is released.
   *
   * @deprecated The Agent calls {@link GceBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }

  private api(project: string): GceApi {
    return new GceApi({
      project,
      clientOptions: {
        fallback: true,
        ...endpointOptions(this.options.apiEndpoint),
        ...(this.options.authClient === undefined ? {} : { authClient: this.options.authClient }),
        ...this.options.clientOptions,
      },
      operationTimeoutMs: this.options.operationTimeoutMs ?? 100_000,
      pollIntervalMs: this.options.pollIntervalMs ?? 1000,
    })
  }

  /** flanneld's order: network, project, instance name, zone; each skipped when given as an option. */
  private async discover(signal?: AbortSignal): Promise<Discovered> {
    const md = {
      endpoint: metadataEndpoint(this.options.metadataEndpoint, this.options.env ?? process.env),
      timeoutMs: this.options.metadataTimeoutMs ?? 5000,
      signal,
    }
    const networkName =
      this.options.network ??
      lastElement(
        await readMetadata(
          '/instance/network-interfaces/0/network',
          'error getting network metadata',
          md,
        ),
      )
    const project =
      this.options.project ??
      lastElement(await readMetadata('/project/project-id', 'error getting project', md))
    const instanceName =
      this.options.instanceName ??
      (await readMetadata('/instance/hostname', 'error getting instance name', md)).split('.')[0] ??
      ''
    const zone =
      this.options.zone ??
      lastElement(await readMetadata('/instance/zone', 'error getting instance zone', md))
    return { project, zone, instanceName, networkName }
  }

  private async ensureRoute(
    api: GceApi,
    project: string,
    subnet: Ip4Net,
    networkLink: string,
    instanceLink: string,
    undo: (step: UndoStep<GceApi>) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const name = routeName(subnet)
    const log = { route: name, destRange: subnet.toString() }
    const existing = await api.getRoute(name, signal).catch((err: unknown) => {
      throw context(err, 'error handling matching route: error getting the route err')
    })
    if (
      existing !== undefined &&
      resourcePath(existing.nextHopInstance) === resourcePath(instanceLink)
    ) {
      this.logger.info(log, 'Exact pre-existing route found')
      return
    }
    let removed: Route | undefined
    if (existing !== undefined) {
      this.logger.info(
        { ...log, nextHopInstance: existing.nextHopInstance },
        'deleting route with another next hop',
      )
      await api.deleteRoute(name, signal)
      removed = existing
    }
    const route: Route = {
      name,
      destRange: subnet.toString(),
      network: networkLink,
      nextHopInstance: instanceLink,
      priority: ROUTE_PRIORITY,
    }
    let operation: string | undefined
    try {
      await api.insertRoute(route, signal, (op) => (operation = op))
    } catch (err) {
      // Aborted or timed out while the insert ran: let it finish, then remove
      // the route, so none is left that nobody owns.
      if (operation !== undefined && !(err instanceof GceOperationError)) {
        await api
          .waitOperation(operation)
          .then(() => api.deleteRoute(name))
          .catch((cleanupErr: unknown) => {
            this.logger.warn(
              { err: cleanupErr, route: name },
              'could not delete the route of a failed start',
            )
          })
      }
      if (removed !== undefined) await this.restore(api, removed)
      throw quota(err, project) ?? err
    }
    // An abort after activation takes the route away again and puts back the one it replaced.
    undo(async (a) => {
      const now = await a.getRoute(name)
      if (now !== undefined && resourcePath(now.nextHopInstance) === resourcePath(instanceLink)) {
        await a.deleteRoute(name)
      }
      if (removed !== undefined) await this.restore(a, removed)
    })
    this.logger.info(log, 'created route')
  }

  // Puts back the route deleted before a failed insert (without the caller's signal: it must run).
  private async restore(api: GceApi, route: Route): Promise<void> {
    const back: Route = {
      name: route.name ?? null,
      destRange: route.destRange ?? null,
      network: route.network ?? null,
      priority: route.priority ?? ROUTE_PRIORITY,
      ...(route.nextHopInstance ? { nextHopInstance: route.nextHopInstance } : {}),
      ...(route.nextHopGateway ? { nextHopGateway: route.nextHopGateway } : {}),
      ...(route.nextHopIp ? { nextHopIp: route.nextHopIp } : {}),
      ...(route.tags?.length ? { tags: route.tags } : {}),
      ...(route.description ? { description: route.description } : {}),
    }
    await api.insertRoute(back).catch((err: unknown) => {
      this.logger.warn(
        { err, route: route.name },
        'could not restore the route deleted by a failed start',
      )
    })
  }
}

function endpointOptions(endpoint: string | undefined): Record<string, unknown> {
  if (endpoint === undefined) return {}
  if (!/^https?:\/\//.test(endpoint)) return { apiEndpoint: endpoint }
  const url = new URL(endpoint)
  const protocol = url.protocol.slice(0, -1)
  return {
    apiEndpoint: url.hostname,
    protocol,
    port: url.port === '' ? (protocol === 'http' ? 80 : 443) : Number(url.port),
  }
}

function lastElement(value: string): string {
  return (
    value
      .split('/')
      .filter((s) => s !== '')
      .pop() ?? value
  )
}

function quota(err: unknown, project: string): RouteLimitError | undefined {
  const isQuota =
    (err instanceof GceOperationError && err.errorCodes.includes('QUOTA_EXCEEDED')) ||
    (err instanceof GceApiError &&
      (err.reason === 'quotaExceeded' || /QUOTA_EXCEEDED|Quota 'ROUTES'/.test(err.message)))
  if (!isQuota) return undefined
  const limit = /Limit: (\d+)/.exec((err as Error).message)?.[1]
  const count = limit === undefined ? undefined : Number(limit)
  return new RouteLimitError(
    `projects/${project}/global/routes`,
    count,
    `route quota of project ${project} exhausted${count === undefined ? '' : ` (${count} routes)`}: ${(err as Error).message}`,
    { cause: err },
  )
}

// Adds flanneld's context to an API error, keeping its class and code.
function context(err: unknown, text: string): unknown {
  if (err instanceof GceApiError) err.message = `${text}: ${err.message}`
  return err
}

/**
 * The `gce` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [gce({ ... })] })`. Each
 * agent start creates a fresh {@link GceBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [gce()] })
 * ```
 */
export function gce(options: GceOptions = {}): BackendFactory {
  return defineBackend('gce', (ctx) => new GceBackend(ctx, options))
}

/**
 * Creates a {@link GceBackend} with default options (the older table form,
 * `backends: { gce: createBackend }`).
 *
 * @deprecated Use `gce(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): GceBackend => new GceBackend(ctx)
