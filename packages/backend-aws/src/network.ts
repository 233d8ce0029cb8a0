import { Observable } from 'rxjs'
import {
  isFlannelError,
  type Ip4Net,
  type Lease,
  type LeaseEvent,
  type Logger,
  type Network,
  type NetworkEvent,
} from '@flannel/core'
import type { Ec2Api } from './ec2.js'
import { normalise, staleRoutes } from './plan.js'

/** What {@link AwsVpcNetwork} needs from registration. */
export interface AwsVpcNetworkInit {
  readonly lease: Lease
  readonly mtu: number
  readonly network: Ip4Net
  readonly tableIds: readonly string[]
  readonly makeApi: () => Ec2Api
  readonly collect: boolean
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
    return new Observable<NetworkEvent>((subscriber) => {
      const abort = new AbortController()
      const api = this.init.makeApi()
      const own = this.lease.subnet.toString()
      const live = new Set<string>([own])
      let first = true
      let queue = Promise.resolve()

      const collect = async (only: Set<string> | undefined): Promise<void> => {
        for (const table of this.init.tableIds) {
          const routes =
            (await api.describeRouteTables({ ids: [table] }, abort.signal))[0]?.Routes ?? []
          for (const route of staleRoutes(routes, this.init.network, live, only)) {
            const destination = route.DestinationCidrBlock as string
            if (await api.deleteRoute(table, destination, abort.signal)) {
              const target = route.NetworkInterfaceId ?? route.InstanceId ?? '?'
              this.init.logger.info(
                { routeTable: table, destination, target },
                'deleted route of no live lease',
              )
              subscriber.next({
                type: 'repaired',
                what: 'stale-route',
                detail: `${table}: ${destination} -> ${target}`,
              })
            }
          }
        }
      }

      const input = events.subscribe({
        next: (batch) => {
          const removed = new Set<string>()
          for (const event of batch) {
            const key = event.lease.subnet.toString()
            if (event.type === 'added') {
              live.add(key)
              removed.delete(key)
              subscriber.next({
                type: 'ignored',
                lease: event.lease,
                reason: 'aws-vpc: each host routes its own subnet in the VPC route table',
              })
            } else if (key !== own) {
              live.delete(key)
              removed.add(normalise(key) ?? key)
            }
          }
          if (!this.init.collect) return
          const only = first ? undefined : removed
          first = false
          if (only !== undefined && only.size === 0) return
          queue = queue
            .then(() => collect(only))
            .catch((error: unknown) => {
              if (abort.signal.aborted || isFlannelError(error, 'ABORTED')) return
              subscriber.next({ type: 'warning', message: 'could not collect stale routes', error })
            })
        },
        error: (err: unknown) => subscriber.error(err),
        complete: () => {
          void queue.then(() => subscriber.complete())
        },
      })

      return () => {
        abort.abort()
        input.unsubscribe()
        api.close()
      }
    })
  }
}
