import { mergeMap, type Observable } from 'rxjs'
import {
  backendOption,
  ConfigError,
  defineBackend,
  preparedWithUndo,
  registerPrepared,
  InvalidArgumentError,
  isFlannelError,
  RouteLimitError,
  silentLogger,
  throwIfAborted,
  type Backend,
  type BackendContext,
  type BackendFactory,
  type Lease,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type NetworkEvent,
  type RegisterOptions,
  type UndoStep,
} from '@flannel/core'
import { sleep } from '@flannel/core/registry'
import { AliApi, createRpcClient, type AliRpcClient } from './api.js'
import { AliApiError, AliDiscoveryError, AliRouteTimeoutError } from './errors.js'
import { DEFAULT_METADATA_ENDPOINT, readMetadata } from './metadata.js'
import { planRoutes, type RouteEntry } from './plan.js'

// Answers meaning "not now": a route entry of the table is still changing, or throttling.
const BUSY_CODES =
  /^(IncorrectRouteEntryStatus|IncorrectStatus|OperationConflict|TaskConflict|Throttling)/

/** The API endpoint flanneld used for every region. */
export const DEFAULT_API_ENDPOINT = 'https://ecs-cn-hangzhou.aliyuncs.com'
/** The API version flanneld used (the ECS API's legacy VPC actions). */
export const DEFAULT_API_VERSION = '2014-05-26'

/** Options of {@link AliVpcBackend}; everything is optional. */
export interface AliVpcOptions {
  /** Access key id; else `Backend.AccessKeyID`, else env `ACCESS_KEY_ID`. */
  readonly accessKeyId?: string | undefined
  /** Access key secret; else `Backend.AccessKeySecret`, else env `ACCESS_KEY_SECRET`. Never logged. */
  readonly accessKeySecret?: string | undefined
  /** Environment to read `ACCESS_KEY_ID`, `ACCESS_KEY_SECRET`, `METADATA_ENDPOINT`, `ECS_ENDPOINT` from. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Metadata server; else env `METADATA_ENDPOINT`, else `http://100.100.100.200`. */
  readonly metadataEndpoint?: string | undefined
  /** API endpoint; else env `ECS_ENDPOINT`, else `https://ecs-cn-hangzhou.aliyuncs.com`. */
  readonly apiEndpoint?: string | undefined
  /** API version. Default `2014-05-26` (the VPC API's `2016-04-28` has the same actions). */
  readonly apiVersion?: string | undefined
  /** Region; skips the metadata lookup. */
  readonly regionId?: string | undefined
  /** This instance's id; skips the metadata lookup. */
  readonly instanceId?: string | undefined
  /** The VPC; skips the metadata lookup. */
  readonly vpcId?: string | undefined
  /** Pause between route-table polls while waiting for `Available`. Default 5000 ms. */
  readonly pollIntervalMs?: number | undefined
  /** How long to wait for all entries to be `Available`. Default 60000 ms. */
  readonly availableTimeoutMs?: number | undefined
  /** Timeout of one API request. Default 10000 ms. */
  readonly requestTimeoutMs?: number | undefined
  /** How long to retry an unreachable metadata server. Default 5000 ms. */
  readonly metadataRetryMs?: number | undefined
  /**
   * Custom entries a route table may hold; when set, a full table is reported
   * before any call that changes it. Unset: the API's own quota answer is used.
   */
  readonly routeTableLimit?: number | undefined
  /** A ready SDK client (`@alicloud/pop-core` `RPCClient` or compatible); default: created lazily. */
  readonly client?: AliRpcClient | undefined
}

interface Discovered {
  readonly regionId: string
  readonly instanceId: string
  readonly vpcId: string
  readonly vrouterId: string
  readonly routeTableId: string
}

interface DescribeVpcsResponse {
  Vpcs?: { Vpc?: { VpcId?: string; VRouterId?: string }[] }
}
interface DescribeVRoutersResponse {
  VRouters?: { VRouter?: { VRouterId?: string; RouteTableIds?: { RouteTableId?: string[] } }[] }
}
interface DescribeRouteTablesResponse {
  RouteTables?: {
    RouteTable?: { RouteTableId?: string; RouteEntrys?: { RouteEntry?: RouteEntry[] } }[]
  }
}

/**
 * flannel's `ali-vpc` backend: routes this host's subnet through the VPC's
 * route table to this ECS instance (spec: backends.md section 7). The lease
 * carries no `BackendType` and no backend data; peers need nothing from it.
 *
 * prepare: credentials, metadata (region, instance, VPC),
 * DescribeVpcs -> VRouter, DescribeVRouters -> first route table, lease,
 * DescribeRouteTables, delete this instance's stale entries, create the
 * entry for the lease subnet (next hop: this instance) unless present, then
 * wait until every entry is `Available`. On failure the entry it created is
 * deleted and the lease released.
 */
export class AliVpcBackend implements Backend {
  readonly type = 'ali-vpc'
  private readonly logger: Logger

  constructor(
    private readonly ctx: BackendContext,
    private readonly options: AliVpcOptions = {},
  ) {
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'ali-vpc' })
  }

  /**
   * Credentials, metadata and the VPC's route table, before any lease;
   * `activate` then puts the own route in place. On failure the API client
   * is closed and nothing is left.
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    const signal = opts.signal
    throwIfAborted(signal)
    const env = this.options.env ?? process.env
    const publicIP = this.ctx.extIface.extAddr ?? this.ctx.extIface.ifaceAddr
    if (publicIP === undefined) {
      throw new InvalidArgumentError(
        'extIface.extAddr',
        publicIP,
        'ali-vpc needs the external IPv4 address',
      )
    }
    const apiEndpoint =
      this.options.apiEndpoint ?? nonEmpty(env.ECS_ENDPOINT) ?? DEFAULT_API_ENDPOINT
    const makeApi = (): AliApi =>
      new AliApi(
        this.options.client !== undefined
          ? () => Promise.resolve(this.options.client as AliRpcClient)
          : () => {
              const creds = resolveCredentials(config, this.options, env)
              return createRpcClient({
                endpoint: apiEndpoint,
                apiVersion: this.options.apiVersion ?? DEFAULT_API_VERSION,
                ...creds,
              })
            },
        apiEndpoint,
        this.options.requestTimeoutMs ?? 10_000,
      )
    const api = makeApi()
    try {
      // Fail on missing credentials before anything else, as flanneld does.
      if (this.options.client === undefined) resolveCredentials(config, this.options, env)
      const where = await this.discover(api, env, signal)
      this.logger.info({ ...where }, 'found the VPC route table')
      return preparedWithUndo({
        attrs: { publicIP },
        api,
        reopen: makeApi,
        close: (a) => a.close(),
        logger: this.logger,
        activate: async (lease, { api, undo, signal }) => {
          await this.reconcile(api, where, lease, undo, signal)
          return new AliVpcNetwork(lease, this.ctx.extIface.mtu)
        },
      })
    } catch (error) {
      api.close()
      throw error
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates; on
   * failure the lease is released.
   *
   * @deprecated The Agent calls {@link AliVpcBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }

  private async discover(
    api: AliApi,
    env: Readonly<Record<string, string | undefined>>,
    signal?: AbortSignal,
  ): Promise<Discovered> {
    const metadata = {
      endpoint:
        this.options.metadataEndpoint ??
        nonEmpty(env.METADATA_ENDPOINT) ??
        DEFAULT_METADATA_ENDPOINT,
      retryMs: this.options.metadataRetryMs ?? 5000,
      signal,
    }
    const regionId = this.options.regionId ?? (await readMetadata('region-id', metadata))
    const instanceId = this.options.instanceId ?? (await readMetadata('instance-id', metadata))
    const vpcId = this.options.vpcId ?? (await readMetadata('vpc-id', metadata))

    const vpcs = await api.call<DescribeVpcsResponse>(
      'DescribeVpcs',
      { RegionId: regionId, VpcId: vpcId },
      signal,
    )
    const vrouterId = vpcs.Vpcs?.Vpc?.[0]?.VRouterId
    if (vrouterId === undefined || vrouterId === '') {
      throw new AliDiscoveryError(
        `DescribeVpcs found no VPC ${vpcId} with a VRouter in region ${regionId}`,
      )
    }
    const routers = await api.call<DescribeVRoutersResponse>(
      'DescribeVRouters',
      { VRouterId: vrouterId, RegionId: regionId },
      signal,
    )
    const routeTableId = routers.VRouters?.VRouter?.[0]?.RouteTableIds?.RouteTableId?.[0]
    if (routeTableId === undefined || routeTableId === '') {
      throw new AliDiscoveryError(`DescribeVRouters found no route table for VRouter ${vrouterId}`)
    }
    return { regionId, instanceId, vpcId, vrouterId, routeTableId }
  }

  private async describeTable(
    api: AliApi,
    where: Discovered,
    signal?: AbortSignal,
  ): Promise<RouteEntry[]> {
    const res = await api.call<DescribeRouteTablesResponse>(
      'DescribeRouteTables',
      { VRouterId: where.vrouterId, RouteTableId: where.routeTableId },
      signal,
    )
    const table = res.RouteTables?.RouteTable?.[0]
    if (table === undefined)
      throw new AliDiscoveryError(`Not found: route table ${where.routeTableId}`)
    return table.RouteEntrys?.RouteEntry ?? []
  }

  private async reconcile(
    api: AliApi,
    where: Discovered,
    lease: Lease,
    undo: (step: UndoStep<AliApi>) => void,
    signal?: AbortSignal,
  ): Promise<void> {
    const { routeTableId, instanceId } = where
    const destination = lease.subnet.toString()
    const plan = planRoutes(await this.describeTable(api, where, signal), {
      routeTableId,
      instanceId,
      subnet: lease.subnet,
    })
    const limit = this.options.routeTableLimit
    const after = plan.customCount - plan.remove.length
    if (!plan.exists && limit !== undefined && after >= limit) {
      throw new RouteLimitError(
        routeTableId,
        plan.customCount,
        `route table ${routeTableId} is full: ${plan.customCount} of ${limit} custom route entries`,
      )
    }

    const deadline = Date.now() + (this.options.availableTimeoutMs ?? 60_000)
    for (const entry of plan.remove) {
      await this.mutate(
        api,
        where,
        deadline,
        'DeleteRouteEntry',
        {
          RouteTableId: routeTableId,
          DestinationCidrBlock: entry.DestinationCidrBlock,
          NextHopId: instanceId,
        },
        signal,
      )
      this.logger.info(
        { routeTableId, destination: entry.DestinationCidrBlock, instanceId },
        'deleted stale route entry',
      )
    }

    if (!plan.exists) {
      try {
        await this.mutate(
          api,
          where,
          deadline,
          'CreateRouteEntry',
          {
            RouteTableId: routeTableId,
            DestinationCidrBlock: destination,
            NextHopType: 'Instance',
            NextHopId: instanceId,
          },
          signal,
        )
      } catch (err) {
        if (
          err instanceof AliApiError &&
          err.apiCode !== undefined &&
          /^QuotaExceeded/.test(err.apiCode)
        ) {
          throw new RouteLimitError(
            routeTableId,
            after,
            `route table ${routeTableId} is full (${after} custom route entries): ${err.message}`,
            { cause: err },
          )
        }
        // Aborted or no answer: the entry may exist all the same; take it away.
        if (outcomeUnknown(err)) await this.rollback(api, where, destination)
        throw err
      }
      // Taken away again when the start fails, now or after activation.
      undo((a) => this.rollback(a, where, destination))
      this.logger.info({ routeTableId, destination, instanceId }, 'created route entry')
    } else {
      this.logger.info({ routeTableId, destination, instanceId }, 'route entry already present')
    }

    await this.waitAvailable(api, where, signal)
  }

  /**
   * Deletes the entry this start created (or may have created), so a failed
   * start leaves nothing behind. Not under the caller's signal (it may be the
   * reason we are here), but bounded: a table that stays busy cannot hold us
   * for long. Failure is logged, not thrown: the start's own error matters more.
   */
  private async rollback(api: AliApi, where: Discovered, destination: string): Promise<void> {
    const deadline = Date.now() + Math.min(this.options.availableTimeoutMs ?? 60_000, 10_000)
    const fields = { routeTableId: where.routeTableId, destination }
    try {
      await this.mutate(api, where, deadline, 'DeleteRouteEntry', {
        RouteTableId: where.routeTableId,
        DestinationCidrBlock: destination,
        NextHopId: where.instanceId,
      })
      this.logger.info(fields, 'deleted the route entry of a failed start')
    } catch (err) {
      if (err instanceof AliApiError && err.apiCode?.includes('NotFound')) return
      this.logger.warn({ ...fields, err }, 'could not delete the route entry of a failed start')
    }
  }

  /**
   * A changing call, repeated while the API answers that the table is busy
   * (another host's entry still `Pending`, throttling) until `deadline`.
   * flanneld gave up at once; hosts starting together make this common.
   */
  private async mutate(
    api: AliApi,
    where: Discovered,
    deadline: number,
    action: string,
    params: Record<string, string | undefined>,
    signal?: AbortSignal,
  ): Promise<void> {
    for (;;) {
      try {
        await api.call(action, params, signal)
        return
      } catch (err) {
        const busy = err instanceof AliApiError && BUSY_CODES.test(err.apiCode ?? '')
        if (!busy || Date.now() >= deadline) throw err
        const intervalMs = this.options.pollIntervalMs ?? 5000
        await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())), signal)
        // Look at the table before trying again, so the log says what we wait for.
        const pending = (await this.describeTable(api, where, signal))
          .filter((e) => e.Status !== 'Available')
          .map((e) => e.DestinationCidrBlock)
        this.logger.debug(
          { action, apiCode: err.apiCode, pending },
          'route table busy, trying again',
        )
      }
    }
  }

  /** flanneld's WaitForAllRouteEntriesAvailable: poll until every entry of the table is Available. */
  private async waitAvailable(api: AliApi, where: Discovered, signal?: AbortSignal): Promise<void> {
    const timeoutMs = this.options.availableTimeoutMs ?? 60_000
    const intervalMs = this.options.pollIntervalMs ?? 5000
    const deadline = Date.now() + timeoutMs
    for (;;) {
      const entries = await this.describeTable(api, where, signal)
      const pending = entries
        .filter((e) => e.Status !== 'Available')
        .map((e) => e.DestinationCidrBlock ?? '?')
      if (pending.length === 0) return
      if (Date.now() >= deadline)
        throw new AliRouteTimeoutError(where.routeTableId, timeoutMs, pending)
      this.logger.debug({ pending }, 'waiting for route entries to become Available')
      await sleep(Math.min(intervalMs, Math.max(0, deadline - Date.now())), signal)
    }
  }
}

/** The network of ali-vpc: the cloud routes traffic, so peers' leases need no local work. */
class AliVpcNetwork implements Network {
  constructor(
    readonly lease: Lease,
    readonly mtu: number,
  ) {}

  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return events.pipe(
      mergeMap((batch) =>
        batch.map(
          (event): NetworkEvent => ({
            type: 'ignored',
            lease: event.lease,
            reason: 'ali-vpc: each host routes its own subnet in the VPC route table',
          }),
        ),
      ),
    )
  }
}

/**
 * flanneld's credential rule: the options (both set), else `Backend.AccessKeyID`
 * and `Backend.AccessKeySecret` when both are set, else both from the
 * environment.
 */
function resolveCredentials(
  config: NetworkConfig,
  options: AliVpcOptions,
  env: Readonly<Record<string, string | undefined>>,
): { accessKeyId: string; accessKeySecret: string } {
  let accessKeyId = nonEmpty(options.accessKeyId)
  let accessKeySecret = nonEmpty(options.accessKeySecret)
  if (accessKeyId === undefined || accessKeySecret === undefined) {
    accessKeyId = nonEmpty(backendOption(config.backend, 'AccessKeyID', 'string'))
    accessKeySecret = nonEmpty(backendOption(config.backend, 'AccessKeySecret', 'string'))
  }
  if (accessKeyId === undefined || accessKeySecret === undefined) {
    accessKeyId = nonEmpty(env.ACCESS_KEY_ID)
    accessKeySecret = nonEmpty(env.ACCESS_KEY_SECRET)
  }
  if (accessKeyId === undefined || accessKeySecret === undefined) {
    // flanneld's text, trailing space included; the value is never put in the error.
    throw new ConfigError(
      'ACCESS_KEY_ID and ACCESS_KEY_SECRET must be provided! ',
      accessKeyId === undefined ? 'Backend.AccessKeyID' : 'Backend.AccessKeySecret',
      undefined,
    )
  }
  return { accessKeyId, accessKeySecret }
}

/** True when a changing call may or may not have taken effect. */
function outcomeUnknown(err: unknown): boolean {
  return isFlannelError(err, 'ABORTED') || (err instanceof AliApiError && err.apiCode === undefined)
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/**
 * The `ali-vpc` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [aliVpc({ ... })] })`. Each
 * agent start creates a fresh {@link AliVpcBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [aliVpc()] })
 * ```
 */
export function aliVpc(options: AliVpcOptions = {}): BackendFactory {
  return defineBackend('ali-vpc', (ctx) => new AliVpcBackend(ctx, options))
}

/**
 * Creates a {@link AliVpcBackend} with default options (the older table form,
 * `backends: { 'ali-vpc': createBackend }`).
 *
 * @deprecated Use `aliVpc(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): AliVpcBackend => new AliVpcBackend(ctx)
