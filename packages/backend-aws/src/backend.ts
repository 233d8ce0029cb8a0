import type {
  EC2Client,
  EC2ClientConfig,
  Instance,
  InstanceNetworkInterface,
} from '@aws-sdk/client-ec2'
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
  type Ip4Net,
  type Logger,
  type Network,
  type NetworkConfig,
  type PreparedNetwork,
  type PrepareOptions,
  type Lease,
  type RegisterOptions,
  type UndoStep,
} from '@flannel/core'
import { Ec2Api, type RouteTarget } from './ec2.js'
import { AwsApiError, AwsDiscoveryError } from './errors.js'
import { DEFAULT_METADATA_ENDPOINT, InstanceMetadata } from './imds.js'
import { AwsVpcNetwork } from './network.js'
import { blackholesInside, planOwnRoute, targetOf, type Ec2Route } from './plan.js'

/** Options of {@link AwsVpcBackend}; everything is optional. */
export interface AwsVpcOptions {
  /** Region; skips the metadata lookup (default: the availability zone from metadata minus its last letter). */
  readonly region?: string | undefined
  /** This instance's id; skips the metadata lookup. */
  readonly instanceId?: string | undefined
  /** Route tables to use; takes precedence over `Backend.RouteTableID` and detection. */
  readonly routeTableIds?: readonly string[] | undefined
  /** EC2 endpoint (e.g. a local emulator); default: the SDK's regional endpoint. */
  readonly endpoint?: string | undefined
  /** Instance metadata service; else env `AWS_EC2_METADATA_SERVICE_ENDPOINT`, else `http://169.254.169.254`. */
  readonly metadataEndpoint?: string | undefined
  /** Timeout of one metadata request. Default 2000 ms. */
  readonly metadataTimeoutMs?: number | undefined
  /**
   * Credentials or a credential provider. Default: the SDK's default chain
   * (environment, shared config, SSO, instance role), with the legacy
   * `AWS_SECURITY_TOKEN` used as session token when `AWS_SESSION_TOKEN` is unset.
   */
  readonly credentials?: EC2ClientConfig['credentials'] | undefined
  /** Environment for the credential variables. Default `process.env`. */
  readonly env?: Readonly<Record<string, string | undefined>> | undefined
  /** Attempts per EC2 call, the first included; the SDK backs off between them (throttling, 5xx). Default 5. */
  readonly maxAttempts?: number | undefined
  /** Remove routes inside `Network` that no live lease owns while the network runs. Default true. */
  readonly collectStaleRoutes?: boolean | undefined
  /**
   * Pause between a lease change and the collection it triggers, so that a
   * lease acquired meanwhile (and the route its host just made) counts as
   * live. Default 5000 ms.
   */
  readonly collectDelayMs?: number | undefined
  /** A ready `EC2Client`; default: created lazily. */
  readonly client?: EC2Client | undefined
}

/** What discovery found, before anything is changed. */
interface Discovered {
  readonly region: string
  readonly instanceId: string
  readonly eni: InstanceNetworkInterface & { NetworkInterfaceId: string }
  readonly tableIds: readonly string[]
  /** Where the table ids came from, for error messages. */
  readonly tableSource: TableSource
}

/** Where route table ids come from: the option, the config, or detection. */
type TableSource = 'routeTableIds' | 'Backend.RouteTableID' | 'detected'

/** Route tables named by the caller, with where they were named. */
interface ConfiguredTables {
  readonly ids: readonly string[]
  readonly source: Exclude<TableSource, 'detected'>
}

/** Registers how to take back a change made during registration (undone when a later step fails). */
type Undo = (step: UndoStep<Ec2Api>) => void

/**
 * flannel's `aws-vpc` backend: each host routes its own subnet in the VPC
 * route table(s) to its network interface (spec: backends.md section 5). The
 * lease carries no `BackendType` and no backend data.
 *
 * prepare: metadata (region, instance id) -> DescribeInstances -> the
 * ENI carrying the interface address -> route tables (`RouteTableID`, else the
 * subnet's table, else the VPC's main table) -> lease -> SourceDestCheck off ->
 * per table: blackholes inside `Network` deleted, the own route created or
 * replaced (kept when right). A failure undoes what was changed and releases
 * the lease. The network's `run` removes routes inside `Network` that no live
 * lease owns.
 */
export class AwsVpcBackend implements Backend {
  readonly type = 'aws-vpc'
  private readonly logger: Logger

  constructor(
    private readonly ctx: BackendContext,
    private readonly options: AwsVpcOptions = {},
  ) {
    this.logger = (ctx.logger ?? silentLogger).child({ backend: 'aws-vpc' })
  }

  /**
   * Metadata, the instance's ENI and the route tables (each must exist),
   * before any lease; `activate` then turns SourceDestCheck off and puts the
   * own route in place. A failure of `activate`, or `abort` after it, undoes
   * what it changed; the API client is closed after `activate` or `abort`.
   */
  async prepare(config: NetworkConfig, opts: PrepareOptions = {}): Promise<PreparedNetwork> {
    const signal = opts.signal
    throwIfAborted(signal)
    const ifaceAddr = this.ctx.extIface.ifaceAddr
    if (ifaceAddr === undefined) {
      throw new InvalidArgumentError(
        'extIface.ifaceAddr',
        ifaceAddr,
        'aws-vpc needs the interface IPv4 address to find its ENI',
      )
    }
    const publicIP = this.ctx.extIface.extAddr ?? ifaceAddr
    const network = config.network
    if (network === undefined) {
      throw new ConfigError(
        'please define a correct Network parameter in the flannel config',
        'Network',
        undefined,
      )
    }
    const configuredTables = configuredRouteTables(this.options.routeTableIds, config)

    const where = await this.discover(ifaceAddr, configuredTables, signal)
    const makeApi = (): Ec2Api => this.api(where.region)
    const api = makeApi()
    try {
      this.logger.info(
        {
          region: where.region,
          instanceId: where.instanceId,
          eni: where.eni.NetworkInterfaceId,
          routeTables: where.tableIds,
        },
        'found the instance network interface and route tables',
      )
      // Make sure every table exists before anything is leased or changed.
      const tables = await this.readTables(api, where, signal)
      return preparedWithUndo({
        attrs: { publicIP },
        api,
        reopen: makeApi,
        close: (a) => a.close(),
        logger: this.logger,
        activate: async (lease, { api: ec2, undo, signal }) => {
          await this.disableSourceDestCheck(ec2, where, undo, signal)
          for (const id of where.tableIds) {
            await this.cleanBlackholes(ec2, id, tables.get(id) ?? [], network, signal)
            await this.ensureOwnRoute(
              ec2,
              id,
              lease.subnet,
              where.eni.NetworkInterfaceId,
              undo,
              signal,
            )
          }
          return this.network(lease, network, where, makeApi)
        },
      })
    } catch (error) {
      api.close()
      throw error
    }
  }

  /**
   * Prepares, acquires the lease from `ctx.registry` and activates; on
   * failure what was changed is undone and the lease released.
   *
   * @deprecated The Agent calls {@link AwsVpcBackend.prepare} and owns the
   *   lease; without an Agent use `registerPrepared(registry, backend, config)`.
   */
  registerNetwork(config: NetworkConfig, opts: RegisterOptions = {}): Promise<Network> {
    return registerPrepared(this.ctx.registry, this, config, opts)
  }

  private network(
    lease: Lease,
    network: Ip4Net,
    where: Discovered,
    makeApi: () => Ec2Api,
  ): Network {
    return new AwsVpcNetwork({
      lease,
      mtu: this.ctx.extIface.mtu,
      network,
      tableIds: where.tableIds,
      makeApi,
      collect: this.options.collectStaleRoutes ?? true,
      collectDelayMs: this.options.collectDelayMs ?? 5000,
      logger: this.logger,
    })
  }

  private api(region: string): Ec2Api {
    return new Ec2Api({
      region,
      endpoint: this.options.endpoint,
      credentials: this.options.credentials ?? credentialsFromEnv(this.options.env),
      maxAttempts: this.options.maxAttempts ?? 5,
      client: this.options.client,
    })
  }

  private async discover(
    ifaceAddr: string,
    configuredTables: ConfiguredTables | undefined,
    signal?: AbortSignal,
  ): Promise<Discovered> {
    const env = this.options.env ?? process.env
    const metadata = new InstanceMetadata({
      endpoint:
        this.options.metadataEndpoint ??
        nonEmpty(env.AWS_EC2_METADATA_SERVICE_ENDPOINT) ??
        DEFAULT_METADATA_ENDPOINT,
      timeoutMs: this.options.metadataTimeoutMs ?? 2000,
    })
    const region =
      this.options.region ??
      (await metadata.get('placement/availability-zone', 'EC2 region name', signal)).replace(
        /[a-z]$/,
        '',
      )
    const instanceId =
      this.options.instanceId ?? (await metadata.get('instance-id', 'EC2 instance ID', signal))

    const api = this.api(region)
    try {
      const instance = await api.describeInstance(instanceId, signal)
      if (instance === undefined) {
        throw new AwsDiscoveryError(
          'instance',
          instanceId,
          `error getting EC2 instance: instance ${instanceId} not found in ${region}`,
        )
      }
      const eni = findEni(instance, ifaceAddr)
      if (eni === undefined) {
        throw new AwsDiscoveryError(
          'network-interface',
          ifaceAddr,
          `unable to find ENI that matches the ${ifaceAddr} IP address (instance ${instanceId})`,
        )
      }
      if (configuredTables !== undefined) {
        return {
          region,
          instanceId,
          eni,
          tableIds: configuredTables.ids,
          tableSource: configuredTables.source,
        }
      }
      const detected = await this.detectRouteTable(api, eni, signal)
      return { region, instanceId, eni, tableIds: [detected], tableSource: 'detected' }
    } finally {
      api.close()
    }
  }

  private async detectRouteTable(
    api: Ec2Api,
    eni: InstanceNetworkInterface,
    signal?: AbortSignal,
  ): Promise<string> {
    if (eni.SubnetId !== undefined) {
      const bySubnet = await api
        .describeRouteTables(
          { filters: [{ Name: 'association.subnet-id', Values: [eni.SubnetId] }] },
          signal,
        )
        .catch((err: unknown) => {
          throw wrap(err, `error describing routeTables for subnetID ${eni.SubnetId}`)
        })
      const id = bySubnet[0]?.RouteTableId
      if (id !== undefined) return id
    }
    const vpc = eni.VpcId ?? ''
    const main = await api
      .describeRouteTables(
        {
          filters: [
            { Name: 'association.main', Values: ['true'] },
            { Name: 'vpc-id', Values: [vpc] },
          ],
        },
        signal,
      )
      .catch((err: unknown) => {
        throw wrap(err, `error describing the main route table of VPC ${vpc}`)
      })
    const id = main[0]?.RouteTableId
    if (id === undefined) {
      throw new AwsDiscoveryError(
        'route-table',
        vpc,
        `main route table not found: Backend.RouteTableID is not set, subnet ${eni.SubnetId ?? '(none)'} ` +
          `has no route table associated and VPC ${vpc || '(none)'} has no main route table`,
      )
    }
    return id
  }

  /**
   * Reads every table to use; a table that does not exist is an
   * {@link AwsDiscoveryError}. By filter rather than by id: EC2 refuses a
   * lookup by an unknown id as a whole, a filter just matches what exists.
   */
  private async readTables(
    api: Ec2Api,
    where: Discovered,
    signal?: AbortSignal,
  ): Promise<Map<string, Ec2Route[]>> {
    const ids = [...new Set(where.tableIds)]
    const tables = await api.describeRouteTables(
      { filters: [{ Name: 'route-table-id', Values: ids }] },
      signal,
    )
    const byId = new Map(tables.map((t) => [t.RouteTableId ?? '', t.Routes ?? []]))
    const missing = ids.filter((id) => !byId.has(id))
    if (missing[0] !== undefined) {
      const names = missing.map((id) => JSON.stringify(id)).join(', ')
      throw new AwsDiscoveryError(
        'route-table',
        missing[0],
        `route table${missing.length > 1 ? 's' : ''} ${names} (${where.tableSource}) not found in ${where.region}`,
      )
    }
    return byId
  }

  private async disableSourceDestCheck(
    api: Ec2Api,
    where: Discovered,
    undo: Undo,
    signal?: AbortSignal,
  ): Promise<void> {
    const eni = where.eni.NetworkInterfaceId
    if (where.eni.SourceDestCheck === false) return
    // It was on: turning it back on is right even if the call below fails half-way.
    undo((a) => a.setSourceDestCheck(eni, true))
    try {
      await api.setSourceDestCheck(eni, false, signal)
      this.logger.info({ eni }, 'disabled SourceDestCheck')
    } catch (err) {
      if (isFlannelError(err, 'ABORTED')) throw err
      // flanneld only warns: the route still works for traffic the ENI itself terminates.
      this.logger.warn({ err, eni }, `failed to disable SourceDestCheck on ${eni}`)
    }
  }

  private async cleanBlackholes(
    api: Ec2Api,
    table: string,
    routes: readonly Ec2Route[],
    network: Ip4Net,
    signal?: AbortSignal,
  ): Promise<void> {
    for (const destination of blackholesInside(routes, network)) {
      try {
        if (await api.deleteRoute(table, destination, signal)) {
          this.logger.info({ routeTable: table, destination }, 'deleted blackhole route')
        }
      } catch (err) {
        if (isFlannelError(err, 'ABORTED')) throw err
        this.logger.warn({ err, routeTable: table }, 'Error cleaning up blackhole routes')
        return
      }
    }
  }

  private async ensureOwnRoute(
    api: Ec2Api,
    table: string,
    subnet: Ip4Net,
    eni: string,
    undo: Undo,
    signal?: AbortSignal,
  ): Promise<void> {
    // Read again: the blackhole clean-up may have removed the old own route.
    const routes = (await api.describeRouteTables({ ids: [table] }, signal))[0]?.Routes ?? []
    const action = planOwnRoute(routes, subnet, eni)
    const destination = subnet.toString()
    const log = { routeTable: table, destination, eni }
    switch (action.kind) {
      case 'keep':
        this.logger.info(log, 'route already present')
        return
      case 'create':
        // Registered before the call: an abort or a lost answer may still have created it.
        undo(async (a) => {
          if (await this.pointsAtEni(a, table, subnet, eni)) await a.deleteRoute(table, destination)
        })
        try {
          await api.createRoute(table, destination, { NetworkInterfaceId: eni }, signal)
        } catch (err) {
          throw (
            routeLimit(err, table, routes.length) ?? wrap(err, `unable to add route ${destination}`)
          )
        }
        this.logger.info(log, 'created route')
        return
      case 'replace': {
        const previous: RouteTarget | undefined = targetOf(action.previous)
        // Registered before the call, for the same reason.
        undo(async (a) => {
          if (!(await this.pointsAtEni(a, table, subnet, eni))) return
          if (previous === undefined || action.previous.State === 'blackhole')
            await a.deleteRoute(table, destination)
          else await a.replaceRoute(table, destination, previous)
        })
        await api
          .replaceRoute(table, destination, { NetworkInterfaceId: eni }, signal)
          .catch((err: unknown) => {
            throw wrap(err, `unable to replace route ${destination}`)
          })
        this.logger.info({ ...log, previous: action.previous }, 'replaced route pointing elsewhere')
        return
      }
    }
  }

  private async pointsAtEni(
    api: Ec2Api,
    table: string,
    subnet: Ip4Net,
    eni: string,
  ): Promise<boolean> {
    const routes = (await api.describeRouteTables({ ids: [table] }))[0]?.Routes ?? []
    return planOwnRoute(routes, subnet, eni).kind === 'keep'
  }
}

/**
 * The route tables named by the `routeTableIds` option, else by
 * `Backend.RouteTableID`; undefined when neither names any (then they are
 * detected). No list is empty and no id is the empty string: neither can name
 * a table (flanneld would go on without a route, or fail at EC2).
 */
function configuredRouteTables(
  option: readonly string[] | undefined,
  config: NetworkConfig,
): ConfiguredTables | undefined {
  if (option !== undefined) {
    const why = unusableTableIds(option)
    if (why !== undefined) throw new InvalidArgumentError('routeTableIds', option, why)
    return { ids: option, source: 'routeTableIds' }
  }
  const ids = routeTableOption(config)
  if (ids === undefined) return undefined
  const why = unusableTableIds(ids)
  if (why !== undefined) {
    const raw = configuredValue(config)
    throw new ConfigError(
      `invalid Backend.RouteTableID ${JSON.stringify(raw)}: ${why}`,
      'Backend.RouteTableID',
      raw,
    )
  }
  return { ids, source: 'Backend.RouteTableID' }
}

function unusableTableIds(ids: readonly string[]): string | undefined {
  if (ids.length === 0)
    return 'name at least one route table, or leave RouteTableID out to detect it'
  if (ids.includes('')) return 'a route table id is never empty'
  return undefined
}

// `Backend.RouteTableID` as written (a string or an array), for error messages.
function configuredValue(config: NetworkConfig): unknown {
  try {
    return backendOption(config.backend, 'RouteTableID', 'string')
  } catch {
    return backendOption(config.backend, 'RouteTableID', 'strings')
  }
}

/** `Backend.RouteTableID`: a string or an array of strings, with flanneld's error texts. */
function routeTableOption(config: NetworkConfig): string[] | undefined {
  try {
    return backendOption(config.backend, 'RouteTableID', 'strings')
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    throw new ConfigError(
      Array.isArray(err.value)
        ? 'Unexpected type in RouteTableID slice. Must be strings.'
        : 'Unexpected RouteTableID type. Must be string or array of strings.',
      'Backend.RouteTableID',
      err.value,
    )
  }
}

function findEni(instance: Instance, ip: string): Discovered['eni'] | undefined {
  return (instance.NetworkInterfaces ?? []).find(
    (n): n is Discovered['eni'] =>
      n.NetworkInterfaceId !== undefined &&
      ((n.PrivateIpAddresses ?? []).some((a) => a.PrivateIpAddress === ip) ||
        n.PrivateIpAddress === ip),
  )
}

/**
 * Explicit credentials when the SDK's chain would miss them: the legacy
 * `AWS_SECURITY_TOKEN` as session token, or an `env` other than `process.env`.
 * Undefined leaves everything to the SDK's default chain.
 */
export function credentialsFromEnv(
  given: Readonly<Record<string, string | undefined>> | undefined,
): { accessKeyId: string; secretAccessKey: string; sessionToken?: string } | undefined {
  const env = given ?? process.env
  const accessKeyId = nonEmpty(env.AWS_ACCESS_KEY_ID)
  const secretAccessKey = nonEmpty(env.AWS_SECRET_ACCESS_KEY)
  if (accessKeyId === undefined || secretAccessKey === undefined) return undefined
  const sessionToken = nonEmpty(env.AWS_SESSION_TOKEN) ?? nonEmpty(env.AWS_SECURITY_TOKEN)
  const legacy = nonEmpty(env.AWS_SESSION_TOKEN) === undefined && sessionToken !== undefined
  if (given === undefined && !legacy) return undefined
  return { accessKeyId, secretAccessKey, ...(sessionToken === undefined ? {} : { sessionToken }) }
}

function routeLimit(err: unknown, table: string, count: number): RouteLimitError | undefined {
  if (!(err instanceof AwsApiError) || err.awsCode !== 'RouteLimitExceeded') return undefined
  return new RouteLimitError(
    table,
    count,
    `route table ${table} is full (${count} routes): ${err.message}`,
    {
      cause: err,
    },
  )
}

// Adds flanneld's context to an API error, keeping its class and code.
function wrap(err: unknown, context: string): unknown {
  if (err instanceof AwsApiError) {
    err.message = `${context}: ${err.message}`
  }
  return err
}

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value
}

/**
 * The `aws-vpc` backend for an `Agent`'s list, with its options:
 * `new Agent({ registry, extIface, backends: [awsVpc({ ... })] })`. Each
 * agent start creates a fresh {@link AwsVpcBackend} with these options.
 *
 * @example
 * ```ts
 * const agent = new Agent({ registry, extIface, backends: [awsVpc()] })
 * ```
 */
export function awsVpc(options: AwsVpcOptions = {}): BackendFactory {
  return defineBackend('aws-vpc', (ctx) => new AwsVpcBackend(ctx, options))
}

/**
 * Creates a {@link AwsVpcBackend} with default options (the older table form,
 * `backends: { 'aws-vpc': createBackend }`).
 *
 * @deprecated Use `awsVpc(options)` in the agent's `backends` list.
 */
export const createBackend = (ctx: BackendContext): AwsVpcBackend => new AwsVpcBackend(ctx)
