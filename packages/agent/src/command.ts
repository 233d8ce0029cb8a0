import { readFile } from 'node:fs/promises'
import { pino, destination } from 'pino'
import type { Subscription } from 'rxjs'
import {
  Agent,
  isFlannelError,
  type AgentTimers,
  type BackendList,
  type BackendTable,
  type ExternalInterface,
  type Logger,
  type NetworkConfig,
  type PrepareContext,
  type SubnetRegistry,
} from '@flannel/core'
import { BACKENDS } from './backends.js'
import type { AgentCommandOptions } from './flags.js'
import { startHealthServer, type HealthServer } from './http.js'
import { AgentMetrics } from './metrics.js'
import { startBlackholeRoutes } from './blackhole.js'
import { firstLine } from './text.js'
import { createKubeRegistry, type KubeEnvironment } from './kube.js'
import type { KubeRegistry } from '@flannel/registry-kube'

/** Parts of the command that can be replaced (tests, embedding). */
export interface AgentCommandDeps {
  /**
   * The registry; default an `EtcdRegistry` built from the `--etcd-*` flags,
   * or with `--kube-subnet-mgr` a `KubeRegistry` from the `--kube*` flags and
   * the environment (closed on exit).
   */
  readonly registry?: SubnetRegistry | undefined
  /** The external interface; default selected by `--iface`/`--iface-regex`/... on this host. */
  readonly extIface?: ExternalInterface | undefined
  /** Install flanneld's masquerade/forward rules (`@flannel/linux` HostRules). Default true. */
  readonly hostRules?: boolean | undefined
  /**
   * The backends, as a list of factories (`[alloc()]`); default all seven,
   * each package imported only when its type is configured.
   */
  readonly backends?: BackendList | BackendTable | undefined
  /** Logger; default pino on stderr at the level given by `-v`. */
  readonly logger?: Logger | undefined
  /** Clock and timers for the agent (tests). */
  readonly timers?: AgentTimers | undefined
  /** Environment for kube mode's `NODE_NAME`, `POD_NAME`, `POD_NAMESPACE`; default `process.env`. */
  readonly env?: KubeEnvironment | undefined
}

/** How the command ended. */
export interface AgentCommandResult {
  /** 0 on a clean stop (a revoked lease included, as flanneld), 1 on a fatal error. */
  readonly code: 0 | 1
  /** The one-line reason of a fatal error or of a revocation (flanneld's text where it has one). */
  readonly reason?: string | undefined
}

/** A started command. */
export interface AgentCommand {
  /** The health/metrics server's base URL, when `--healthz-port` is set. */
  readonly healthUrl: string | undefined
  /** True once subnet.env is written and the rules are in place. */
  isReady(): boolean
  /** Settles when the command has stopped and released what it must. */
  readonly done: Promise<AgentCommandResult>
  /** Stops cleanly (SIGTERM): renewal and watches stop; lease, subnet.env and data plane stay. */
  stop(): void
}

/** pino's level for flanneld's `-v` verbosity. */
export function levelForVerbosity(v: number): string {
  if (v >= 4) return 'trace'
  if (v >= 1) return 'debug'
  return 'info'
}

/** Starts the `flannel-agent` command with parsed options; see {@link AgentCommand}. */
export async function startAgentCommand(
  options: AgentCommandOptions,
  deps: AgentCommandDeps = {},
): Promise<AgentCommand> {
  const logger: Logger =
    deps.logger ?? pino({ level: levelForVerbosity(options.v) }, destination({ fd: 2, sync: true }))
  const metrics = new AgentMetrics()
  let ready = false
  const health: HealthServer | undefined =
    options.healthzPort > 0
      ? await startHealthServer(
          options.healthzIP,
          options.healthzPort,
          () => ready,
          metrics.registry,
        )
      : undefined
  if (health) logger.info({ url: health.url }, 'health server listening')

  const stopper = new AbortController()
  let subscription: Subscription | undefined
  let ownRegistry: SubnetRegistry | undefined
  let stopRuleCheck: (() => void) | undefined
  let stopBlackholeCheck: (() => Promise<void>) | undefined

  const run = async (): Promise<AgentCommandResult> => {
    let registry = deps.registry
    let kube: KubeRegistry | undefined
    if (!registry && options.kubeSubnetMgr) {
      registry =
        ownRegistry =
        kube =
          await createKubeRegistry(options, deps.env ?? process.env, logger)
    } else if (!registry) {
      registry = ownRegistry = await createEtcdRegistry(options, logger)
    }
    // The Agent reads the config, then asks for the interface (flanneld's order).
    let ifaceChosen = false
    const extIface = async (
      config: NetworkConfig,
      { signal }: { readonly signal: AbortSignal },
    ): Promise<ExternalInterface> => {
      let ifaceOptions = options
      if (kube) {
        logger.info({}, `Found network config - Backend type: ${config.backendType}`)
        // flanneld's GetStoredPublicIP: node-public-ip(v6) replace --public-ip(v6).
        const stored = await kube.getStoredPublicIP({ signal })
        ifaceOptions = {
          ...options,
          publicIP: stored.publicIP ?? options.publicIP,
          publicIPv6: stored.publicIPv6 ?? options.publicIPv6,
        }
      }
      const ext = deps.extIface ?? (await selectInterface(ifaceOptions, config, logger))
      logger.info(
        { iface: ext.name, publicIP: ext.extAddr, publicIPv6: ext.extV6Addr },
        'Using interface',
      )
      ifaceChosen = true
      return ext
    }
    const agent = new Agent({
      registry,
      backends: deps.backends ?? BACKENDS,
      extIface,
      subnetFile: options.subnetFile,
      ipMasq: options.ipMasq,
      renewMarginMs: options.subnetLeaseRenewMargin * 60_000,
      logger,
      timers: deps.timers,
      prepare: async (ctx) => {
        metrics.watchNetwork(ctx.network)
        const undoRules =
          deps.hostRules === false
            ? undefined
            : await installRules(ctx, options, logger, (fn) => (stopRuleCheck = fn))
        if (!options.ipBlackholeRoute) return undoRules
        try {
          const blackholes = await startBlackholeRoutes(ctx, options, logger)
          stopBlackholeCheck = blackholes.stop
          return async () => {
            await blackholes.undo()
            await undoRules?.()
          }
        } catch (error) {
          await undoRules?.()
          throw error
        }
      },
    })
    let registered = false
    return new Promise<AgentCommandResult>((resolve) => {
      stopper.signal.addEventListener('abort', () => resolve({ code: 0 }), { once: true })
      subscription = agent.run({ signal: stopper.signal }).subscribe({
        next: (event) => {
          metrics.observe(event)
          if (event.type === 'registered') registered = true
          if (event.type === 'ready') {
            ready = true
            logger.info({ subnet: event.lease.subnet.toString(), mtu: event.mtu }, 'ready')
            if (kube && options.setNodeNetworkUnavailable) {
              // flanneld's CompleteLease: one condition patch; a failure is logged, not fatal.
              kube.markNetworkAvailable({ signal: stopper.signal }).then(
                () => logger.info({}, 'NetworkUnavailable condition set to False'),
                (error: unknown) => {
                  if (!stopper.signal.aborted) {
                    logger.error(
                      { err: error },
                      `CompleteLease execute error err: ${firstLine(error)}`,
                    )
                  }
                },
              )
            }
          }
        },
        error: (error: unknown) => {
          if (!ifaceChosen) {
            // No config (a closed registry) or no interface: flanneld's text alone.
            if (isFlannelError(error, 'REGISTRY_UNAVAILABLE')) metrics.registryError()
            resolve(fatal(firstLine(error)))
          } else if (isFlannelError(error, 'LEASE_REVOKED')) {
            // flanneld logs the revocation as an error, then shuts down
            // cleanly and exits 0 (spec: core.md section 6); so do we.
            const reason = 'Lease has been revoked. Shutting down daemon.'
            logger.error({}, reason)
            resolve({ code: 0, reason })
          } else if (!registered) {
            resolve(fatal(`Error registering network: ${firstLine(error)}`))
          } else {
            resolve(fatal(firstLine(error)))
          }
        },
        complete: () => resolve({ code: 0 }),
      })
    })
  }

  const fatal = (reason: string): AgentCommandResult => {
    logger.error({}, reason)
    return { code: 1, reason }
  }

  const done = run()
    .catch((error: unknown) => {
      if (isFlannelError(error, 'REGISTRY_UNAVAILABLE')) metrics.registryError()
      return fatal(firstLine(error))
    })
    .then(async (result) => {
      subscription?.unsubscribe()
      stopRuleCheck?.()
      await stopBlackholeCheck?.()
      await health?.close()
      await ownRegistry?.close().catch(() => undefined)
      logger.info({ code: result.code }, 'exiting')
      return result
    })

  return {
    healthUrl: health?.url,
    isReady: () => ready,
    done,
    stop: () => stopper.abort(),
  }
}

async function selectInterface(
  options: AgentCommandOptions,
  config: NetworkConfig,
  logger: Logger,
): Promise<ExternalInterface> {
  const linux = await import('@flannel/linux')
  const select = linux.selectExternalInterface(new linux.NetlinkHostNetwork(), {
    iface: options.iface,
    ifaceRegex: options.ifaceRegex,
    ifaceCanReach: options.ifaceCanReach || undefined,
    publicIP: options.publicIP || undefined,
    publicIPv6: options.publicIPv6 || undefined,
    enableIPv4: config.enableIPv4,
    enableIPv6: config.enableIPv6,
  })
  return select.catch((error: unknown) => {
    // flanneld prints its message alone; the detail (which flag failed) goes to the log.
    const text = error instanceof Error ? error.message : ''
    if (text.startsWith(linux.NO_MATCHING_INTERFACE_MESSAGE)) {
      logger.error({ err: error }, 'external interface selection failed')
      throw new linux.ExternalInterfaceError(linux.NO_MATCHING_INTERFACE_MESSAGE, { cause: error })
    }
    throw error
  })
}

/**
 * Installs flanneld's masquerade/forward rules and checks them every
 * `--iptables-resync` seconds (iptables mode), until `onCheckStarted`'s
 * function is called; the rules themselves stay when the command stops. The
 * returned undo (failed start only) removes them.
 */
async function installRules(
  ctx: PrepareContext,
  options: AgentCommandOptions,
  logger: Logger,
  onCheckStarted: (stop: () => void) => void,
): Promise<() => Promise<void>> {
  const { HostRules } = await import('@flannel/linux')
  const { config, network } = ctx
  const rules = new HostRules({
    network: config.enableIPv4 ? config.network : undefined,
    subnet: config.enableIPv4 ? network.lease.subnet : undefined,
    ipv6Network: config.enableIPv6 ? config.ipv6Network : undefined,
    ipv6Subnet: config.enableIPv6 ? network.lease.ipv6Subnet : undefined,
    ipMasq: options.ipMasq,
    forwardRules: options.iptablesForwardRules,
    fullyRandom: options.ipMasqFullyRandomDisable ? false : undefined,
    nftables: config.enableNFTables,
    // The check runs here rather than inside HostRules so that a clean stop
    // can end it while keeping the rules (HostRules.stop removes them).
    resyncIntervalMs: 0,
    logger,
  })
  await rules.start()
  let timer: NodeJS.Timeout | undefined
  if (!config.enableNFTables && options.iptablesResync > 0) {
    timer = setInterval(() => {
      rules.check().then(
        (repaired) => repaired && logger.info({}, 'flannel iptables rules repaired'),
        (error: unknown) => logger.warn({ err: error }, 'checking the iptables rules failed'),
      )
    }, options.iptablesResync * 1000)
    onCheckStarted(() => clearInterval(timer))
  }
  return async () => {
    clearInterval(timer)
    await rules.stop()
  }
}

/** The etcd registry for the `--etcd-*` flags (TLS only when key and cert are both given). */
async function createEtcdRegistry(
  options: AgentCommandOptions,
  logger: Logger,
): Promise<SubnetRegistry> {
  const { EtcdRegistry } = await import('@flannel/registry-etcd')
  const useTls = options.etcdKeyfile !== '' && options.etcdCertfile !== ''
  const tls = useTls
    ? {
        key: await readFile(options.etcdKeyfile),
        cert: await readFile(options.etcdCertfile),
        ...(options.etcdCafile !== '' ? { ca: await readFile(options.etcdCafile) } : {}),
      }
    : undefined
  const auth =
    options.etcdUsername !== ''
      ? { username: options.etcdUsername, password: options.etcdPassword }
      : undefined
  return new EtcdRegistry({
    endpoints: options.etcdEndpoints,
    prefix: options.etcdPrefix,
    ...(tls ? { tls } : {}),
    ...(auth ? { auth } : {}),
    logger,
  })
}
