import type { Logger, PrepareContext } from '@flannel/core'
import type { AgentCommandOptions } from './flags.js'
import { firstLine } from './text.js'

/**
 * `--ip-blackhole-route`: a blackhole route for each own subnet, added now and
 * checked every `--iptables-resync` seconds as flanneld does (flanneld adds it
 * only after the first interval). The routes stay when the command stops;
 * `undo` (failed start only) removes the ones this run added.
 */
export async function startBlackholeRoutes(
  ctx: PrepareContext,
  options: AgentCommandOptions,
  logger: Logger,
): Promise<{ stop(): Promise<void>; undo(): Promise<void> }> {
  const { NetlinkHostNetwork, syncBlackholeRoutes, FLANNEL_ROUTE_PROTOCOL } = await import(
    '@flannel/linux'
  )
  const host = new NetlinkHostNetwork({ logger })
  const { config, network } = ctx
  const subnets: string[] = []
  if (config.enableIPv4) subnets.push(network.lease.subnet.toString())
  if (config.enableIPv6 && network.lease.ipv6Subnet)
    subnets.push(network.lease.ipv6Subnet.toString())
  const added = new Set<string>()
  let lastFailure = ''
  const sync = async (): Promise<void> => {
    const result = await syncBlackholeRoutes(host, subnets)
    for (const subnet of result.added) added.add(subnet)
    if (result.added.length > 0) logger.info({ subnets: result.added }, 'blackhole route added')
    if (result.removed.length > 0)
      logger.info({ subnets: result.removed }, 'stale blackhole route removed')
    // flanneld logs every failed try; once per distinct failure is enough to see it
    const failure = result.failed.map((f) => `${f.subnet}: ${firstLine(f.error)}`).join('; ')
    if (failure !== '' && failure !== lastFailure)
      logger.error({}, `Failed to setup blackhole route, ${failure}`)
    lastFailure = failure
  }
  let timer: NodeJS.Timeout | undefined
  let running: Promise<void> = Promise.resolve()
  const tick = (): void => {
    running = running
      .then(sync)
      .catch((error: unknown) => logger.warn({ err: error }, 'checking blackhole routes failed'))
  }
  try {
    await sync()
  } catch (error) {
    await host.close()
    throw error
  }
  if (options.iptablesResync > 0) timer = setInterval(tick, options.iptablesResync * 1000)
  const stop = async (): Promise<void> => {
    clearInterval(timer)
    await running
    await host.close()
  }
  return {
    stop,
    undo: async () => {
      clearInterval(timer)
      await running
      for (const dst of added) {
        await host
          .deleteRoute({
            family: dst.includes(':') ? 'inet6' : 'inet',
            dst,
            type: 'blackhole',
            protocol: FLANNEL_ROUTE_PROTOCOL,
          })
          .catch(() => undefined)
      }
      await host.close()
    },
  }
}
