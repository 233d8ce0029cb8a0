import type { Observable } from 'rxjs'
import {
  runStaleRouteCollector,
  type Ip4Net,
  type Lease,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkEvent,
} from '@flannel/core'
import type { Ec2Api } from './ec2.js'
import { staleRoutes } from './plan.js'

/** What {@link AwsVpcNetwork} needs from registration. */
export interface AwsVpcNetworkInit {
  readonly lease: Lease
  readonly mtu: number
  readonly network: Ip4Net
  readonly tableIds: readonly string[]
  readonly makeApi: () => Ec2Api
  readonly collect: boolean
  readonly collectDelayMs: number
  readonly logger: Logger
}

/**
 * The network of aws-vpc. Each host keeps its own route; `run` collects the
 * routes nobody owns any more: after the first batch (the full set of live
 * leases) every route inside `Network` that targets an instance or ENI and
 * matches no live lease is deleted; afterwards only the subnets of removed
 * leases are looked at. Routes outside `Network` are never touched.
 */
export class AwsVpcNetwork implements Network {
  readonly lease: Lease
  readonly mtu: number

  constructor(private readonly init: AwsVpcNetworkInit) {
    this.lease = init.lease
    this.mtu = init.mtu
  }

  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return runStaleRouteCollector(events, {
      own: this.lease,
      ignoredReason: 'aws-vpc: each host routes its own subnet in the VPC route table',
      enabled: this.init.collect,
      delayMs: this.init.collectDelayMs,
      start: () => {
        const api = this.init.makeApi()
        return {
          close: () => api.close(),
          collect: async (live, only, signal, emit) => {
            for (const table of this.init.tableIds) {
              const routes =
                (await api.describeRouteTables({ ids: [table] }, signal))[0]?.Routes ?? []
              for (const route of staleRoutes(routes, this.init.network, live, only)) {
                const destination = route.DestinationCidrBlock as string
                if (!(await api.deleteRoute(table, destination, signal))) continue
                const target = route.NetworkInterfaceId ?? route.InstanceId ?? '?'
                this.init.logger.info(
                  { routeTable: table, destination, target },
                  'deleted route of no live lease',
                )
                emit({
                  type: 'repaired',
                  what: 'stale-route',
                  detail: `${table}: ${destination} -> ${target}`,
                })
              }
            }
          },
        }
      },
    })
  }
}
