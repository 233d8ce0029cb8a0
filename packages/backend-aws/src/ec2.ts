import type {
  DescribeInstancesCommandOutput,
  DescribeRouteTablesCommandOutput,
  EC2Client,
  EC2ClientConfig,
  Filter,
  Instance,
  RouteTable,
} from '@aws-sdk/client-ec2'
import type * as Ec2Sdk from '@aws-sdk/client-ec2'
import { AbortError } from '@flannel/core'
import { AwsApiError, AwsAuthError } from './errors.js'

type Sdk = typeof Ec2Sdk

// Codes meaning the credentials or permissions are wrong, not the request.
const AUTH_CODES = new Set([
  'AuthFailure',
  'InvalidClientTokenId',
  'SignatureDoesNotMatch',
  'UnauthorizedOperation',
  'ExpiredToken',
  'RequestExpired',
  'OptInRequired',
  'CredentialsProviderError',
  'InvalidAccessKeyId',
])

/** Settings of {@link Ec2Api}. */
export interface Ec2ApiSettings {
  /** The region to talk to. */
  readonly region: string
  /** A custom endpoint (e.g. a local emulator). */
  readonly endpoint?: string | undefined
  /** Explicit credentials; undefined: the SDK's default provider chain. */
  readonly credentials?: EC2ClientConfig['credentials'] | undefined
  /** Attempts per call, including the first (the SDK backs off on throttling). */
  readonly maxAttempts: number
  /** A ready client; used as is and not destroyed. */
  readonly client?: EC2Client | undefined
}

/**
 * The EC2 calls of the aws-vpc backend over `@aws-sdk/client-ec2`, which is
 * imported on first use. Every Describe is read to its last page; every call
 * takes an AbortSignal; SDK errors become {@link AwsApiError} /
 * {@link AwsAuthError}.
 */
export class Ec2Api {
  private sdk: Sdk | undefined
  private client: EC2Client | undefined

  constructor(private readonly settings: Ec2ApiSettings) {}

  /** Destroys the client this object created (sockets, timers). */
  close(): void {
    if (this.settings.client === undefined) this.client?.destroy()
    this.client = undefined
  }

  /** DescribeInstances for one instance id; undefined when EC2 says it does not exist or cannot (malformed id). */
  async describeInstance(instanceId: string, signal?: AbortSignal): Promise<Instance | undefined> {
    const instances: Instance[] = []
    try {
      await this.paginate(async (sdk, NextToken) => {
        const out = await this.send<DescribeInstancesCommandOutput>(
          sdk.DescribeInstancesCommand,
          { InstanceIds: [instanceId], NextToken },
          signal,
        )
        for (const r of out.Reservations ?? []) instances.push(...(r.Instances ?? []))
        return out.NextToken
      })
    } catch (err) {
      if (
        err instanceof AwsApiError &&
        (err.awsCode === 'InvalidInstanceID.NotFound' ||
          err.awsCode === 'InvalidInstanceID.Malformed')
      )
        return undefined
      throw err
    }
    return instances.find((i) => i.InstanceId === instanceId)
  }

  /** DescribeRouteTables by ids or by filters, every page. */
  async describeRouteTables(
    query: { readonly ids?: readonly string[]; readonly filters?: readonly Filter[] },
    signal?: AbortSignal,
  ): Promise<RouteTable[]> {
    const tables: RouteTable[] = []
    await this.paginate(async (sdk, NextToken) => {
      const out = await this.send<DescribeRouteTablesCommandOutput>(
        sdk.DescribeRouteTablesCommand,
        {
          ...(query.ids === undefined ? { MaxResults: 100 } : { RouteTableIds: [...query.ids] }),
          ...(query.filters === undefined ? {} : { Filters: [...query.filters] }),
          NextToken,
        },
        signal,
      )
      tables.push(...(out.RouteTables ?? []))
      return out.NextToken
    })
    return tables
  }

  /** Sets the SourceDestCheck attribute of a network interface. */
  async setSourceDestCheck(eni: string, value: boolean, signal?: AbortSignal): Promise<void> {
    const sdk = await this.load()
    await this.send(
      sdk.ModifyNetworkInterfaceAttributeCommand,
      { NetworkInterfaceId: eni, SourceDestCheck: { Value: value } },
      signal,
    )
  }

  /** CreateRoute `destination -> target` in a table. */
  async createRoute(
    table: string,
    destination: string,
    target: RouteTarget,
    signal?: AbortSignal,
  ): Promise<void> {
    const sdk = await this.load()
    await this.send(
      sdk.CreateRouteCommand,
      { RouteTableId: table, DestinationCidrBlock: destination, ...target },
      signal,
    )
  }

  /** ReplaceRoute: points an existing route at another target. */
  async replaceRoute(
    table: string,
    destination: string,
    target: RouteTarget,
    signal?: AbortSignal,
  ): Promise<void> {
    const sdk = await this.load()
    await this.send(
      sdk.ReplaceRouteCommand,
      { RouteTableId: table, DestinationCidrBlock: destination, ...target },
      signal,
    )
  }

  /** DeleteRoute; false when the route was already gone (`InvalidRoute.NotFound`). */
  async deleteRoute(table: string, destination: string, signal?: AbortSignal): Promise<boolean> {
    const sdk = await this.load()
    try {
      await this.send(
        sdk.DeleteRouteCommand,
        { RouteTableId: table, DestinationCidrBlock: destination },
        signal,
      )
      return true
    } catch (err) {
      if (err instanceof AwsApiError && err.awsCode === 'InvalidRoute.NotFound') return false
      throw err
    }
  }

  // Calls `page` with each NextToken until there is none.
  private async paginate(
    page: (sdk: Sdk, token: string | undefined) => Promise<string | undefined>,
  ): Promise<void> {
    const sdk = await this.load()
    let token: string | undefined
    const seen = new Set<string>()
    do {
      token = await page(sdk, token)
      // A token seen before would loop forever; EC2 never does that, an emulator might.
      if (token !== undefined && token !== '' && seen.has(token)) break
      if (token !== undefined) seen.add(token)
    } while (token !== undefined && token !== '')
  }

  private async load(): Promise<Sdk> {
    this.sdk ??= await import('@aws-sdk/client-ec2')
    return this.sdk
  }

  private getClient(sdk: Sdk): EC2Client {
    if (this.settings.client !== undefined) return this.settings.client
    this.client ??= new sdk.EC2Client({
      region: this.settings.region,
      maxAttempts: this.settings.maxAttempts,
      ...(this.settings.endpoint === undefined ? {} : { endpoint: this.settings.endpoint }),
      ...(this.settings.credentials === undefined
        ? {}
        : { credentials: this.settings.credentials }),
    })
    return this.client
  }

  // One send with error mapping; the command classes differ only in types.
  private async send<O>(
    Command: new (input: never) => unknown,
    input: object,
    signal?: AbortSignal,
  ): Promise<O> {
    const sdk = await this.load()
    const client = this.getClient(sdk)
    const operation = Command.name.replace(/Command$/, '')
    if (signal?.aborted) throw new AbortError(undefined, { cause: signal.reason })
    try {
      const send = client.send.bind(client) as (
        command: unknown,
        options: { abortSignal?: AbortSignal },
      ) => Promise<O>
      return await send(
        new (Command as new (input: object) => unknown)(input),
        signal === undefined ? {} : { abortSignal: signal },
      )
    } catch (err) {
      throw mapError(operation, err, signal)
    }
  }
}

/** Where a route points: this backend only ever targets a network interface. */
export interface RouteTarget {
  readonly NetworkInterfaceId?: string | undefined
  readonly InstanceId?: string | undefined
  readonly GatewayId?: string | undefined
  readonly NatGatewayId?: string | undefined
  readonly TransitGatewayId?: string | undefined
  readonly VpcPeeringConnectionId?: string | undefined
}

function mapError(operation: string, err: unknown, signal?: AbortSignal): unknown {
  if (err instanceof AbortError) return err
  const e = err as {
    name?: string
    message?: string
    Code?: string
    $metadata?: { httpStatusCode?: number; requestId?: string }
  }
  if (signal?.aborted || e.name === 'AbortError')
    return new AbortError(undefined, { cause: signal?.reason ?? err })
  const awsCode =
    e.Code ??
    (e.$metadata?.httpStatusCode !== undefined || e.name === 'CredentialsProviderError'
      ? e.name
      : undefined)
  const details = {
    operation,
    awsCode,
    requestId: e.$metadata?.requestId,
    httpStatus: e.$metadata?.httpStatusCode,
    detail: e.message ?? String(err),
  }
  return awsCode !== undefined && AUTH_CODES.has(awsCode)
    ? new AwsAuthError(details, { cause: err })
    : new AwsApiError(details, { cause: err })
}
