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
    return new Observable<NetworkEvent>((subscriber) => {
      const abort = new AbortController()
      const api = this.init.makeApi()
      const own = this.lease.subnet.toString()
      const live = new Set<string>([own])
      let first = true
      let queue = Promise.resolve()

      const collect = async (only: Set<string> | undefined): Promise<void> => {
        const routes = await api.listRoutes(abort.signal)
        for (const route of staleRoutes(
          routes,
          this.init.network,
          this.init.networkLink,
          live,
          only,
        )) {
          const name = route.name as string
          if (await api.deleteRoute(name, abort.signal)) {
            this.init.logger.info(
              { route: name, nextHopInstance: route.nextHopInstance },
              'deleted route of no live lease',
            )
            subscriber.next({
              type: 'repaired',
              what: 'stale-route',
              detail: `${name}: ${route.destRange ?? '?'} -> ${route.nextHopInstance ?? '?'}`,
            })
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
                reason: 'gce: each host routes its own subnet in the VPC network',
              })
            } else if (key !== own) {
              live.delete(key)
              removed.add(key)
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
        void api.close()
      }
    })
  }
}
