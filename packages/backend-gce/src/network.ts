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
import type { GceApi } from './api.js'
import { staleRoutes } from './plan.js'

/** What {@link GceNetwork} needs from registration. */
export interface GceNetworkInit {
  readonly lease: Lease
  readonly mtu: number
  readonly network: Ip4Net
  readonly networkLink: string
  readonly makeApi: () => GceApi
  readonly collect: boolean
  readonly collectDelayMs: number
  readonly logger: Logger
}

/**
 * The network of gce. Each host keeps its own route; `run` collects flannel's
 * routes nobody owns: after the first batch (all live leases) every
 * `flannel-` route of this network whose subnet has no live lease is deleted;
 * afterwards only the subnets of removed leases are looked at. Routes not
 * named by flannel, of other networks or outside `Network` are kept.
 */
export class GceNetwork implements Network {
  readonly lease: Lease
  readonly mtu: number

  constructor(private readonly init: GceNetworkInit) {
    this.lease = init.lease
    this.mtu = init.mtu
  }

  run(events: Observable<LeaseEvent[]>): Observable<NetworkEvent> {
    return runStaleRouteCollector(events, {
      own: this.lease,
      ignoredReason: 'gce: each host routes its own subnet in the VPC network',
      enabled: this.init.collect,
      delayMs: this.init.collectDelayMs,
      start: () => {
        const api = this.init.makeApi()
        return {
          close: () => void api.close(),
          collect: async (live, only, signal, emit) => {
            const routes = await api.listRoutes(signal)
            for (const route of staleRoutes(
              routes,
              this.init.network,
              this.init.networkLink,
              live,
              only,
            )) {
              const name = route.name as string
              if (!(await api.deleteRoute(name, signal))) continue
              this.init.logger.info(
                { route: name, nextHopInstance: route.nextHopInstance },
                'deleted route of no live lease',
              )
              emit({
                type: 'repaired',
                what: 'stale-route',
                detail: `${name}: ${route.destRange ?? '?'} -> ${route.nextHopInstance ?? '?'}`,
              })
            }
          },
        }
      },
    })
  }
}
