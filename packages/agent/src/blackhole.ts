import type { Logger, PrepareContext } from '@flannel/core'
import type { AgentCommandOptions } from './flags.js'
import { firstLine } from './text.js'

/**
 * `--ip-blackhole-route`: a blackhole route for each own subnet, added now and
 * checked every `--iptables-resync` seconds as flanneld does (flanneld adds it
 * only after the first interval), and at once when a route for the own subnet
 * comes or goes: a subnet routed by a bridge gets no blackhole (see
 * `syncBlackholeRoutes`). The routes stay when the command stops; `undo`
 * (failed start only) removes the ones this run added.
 */
export async function startBlackholeRoutes(
  ctx: PrepareContext,
  options: AgentCommandOptions,
  logger: Logger,
): Promise<{ stop(): Promise<void>; undo(): Promise<void> }> {
  const linux = await import('@flannel/linux')
  const { normalizeCidr, syncBlackholeRoutes } = await import('@flannel/linux/backend')
  const host = new linux.NetlinkHostNetwork({ logger })
  const { config, network } = ctx
  const subnets: string[] = []
  if (config.enableIPv4) subnets.push(network.lease.subnet.toString())
  if (config.enableIPv6 && network.lease.ipv6Subnet)
    subnets.push(network.lease.ipv6Subnet.toString())
  const own = new Set(subnets.map((s) => normalizeCidr(s)))
  const added = new Set<string>()
  let lastFailure = ''
  let lastYielded = ''
  const sync = async (): Promise<void> => {
    const result = await syncBlackholeRoutes(host, subnets)
    for (const subnet of result.added) added.add(subnet)
    if (result.added.length > 0) logger.info({ subnets: result.added }, 'blackhole route added')
    if (result.removed.length > 0)
      logger.info({ subnets: result.removed }, 'flannel blackhole route removed')
    const yielded = result.yielded.join(',')
    if (yielded !== '' && yielded !== lastYielded)
      logger.info(
        { subnets: result.yielded },
        'a unicast route (e.g. a bridge) routes the own subnet: no blackhole route',
      )
    lastYielded = yielded
    // flanneld logs every failed try; once per distinct failure is enough to see it
    const failure = result.failed.map((f) => `${f.subnet}: ${firstLine(f.error)}`).join('; ')
    if (failure !== '' && failure !== lastFailure)
      logger.error({}, `Failed to setup blackhole route, ${failure}`)
    lastFailure = failure
  }
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  let queued = false
  /** Runs one more sync after the current one; calls while one is queued are merged. */
  const tick = (): void => {
    if (queued) return
    queued = true
    running = running
      .then(() => {
        queued = false
        return sync()
      })
      .catch((error: unknown) => logger.warn({ err: error }, 'checking blackhole routes failed'))
  }
  try {
    await sync()
  } catch (error) {
    await host.close()
    throw error
  }
  if (options.iptablesResync > 0) timer = setInterval(tick, options.iptablesResync * 1000)
  // A bridge taking the own subnet (or giving it up) is acted on at once, not at the next
  // check. The kernel sends no route notification when a link's routes go with the link,
  // so any link change triggers a check too.
  const watch = host.notifications(['route', 'link']).subscribe({
    next: (n) => {
      if (n.kind !== 'route' || own.has(n.route.dst)) tick()
    },
    error: (error: unknown) => logger.warn({ err: error }, 'route notifications failed'),
  })
  const halt = async (): Promise<void> => {
    watch.unsubscribe()
    clearInterval(timer)
    await running
  }
  return {
    stop: async () => {
      await halt()
      await host.close()
    },
    undo: async () => {
      await halt()
      for (const dst of added) {
        await host
          .deleteRoute({
            family: dst.includes(':') ? 'inet6' : 'inet',
            dst,
            type: 'blackhole',
            protocol: linux.FLANNEL_ROUTE_PROTOCOL,
          })
          .catch(() => undefined)
      }
      await host.close()
    },
  }
}
