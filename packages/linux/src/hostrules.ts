import { silentLogger, type Ip4Net, type Ip6Net, type Logger } from '@flannel/core'
import { Subject, type Observable } from 'rxjs'
import { runCommand, type CommandRunner } from './command.js'
import {
  forwardChain,
  masqueradeChain,
  nftablesDeleteScript,
  nftablesScript,
  type IpVersion,
  type IptablesChain,
  type RuleNetworks,
} from './rules.js'

/** Options of {@link HostRules}: flanneld's `--ip-masq`, `--iptables-forward-rules`, ... */
export interface HostRulesOptions {
  /** The IPv4 pod network (`N`); IPv4 rules are written when it and `subnet` are set. */
  readonly network?: Ip4Net | undefined
  /** This host's IPv4 lease subnet (`S`). */
  readonly subnet?: Ip4Net | undefined
  /** The IPv6 pod network; IPv6 rules are written when it and `ipv6Subnet` are set. */
  readonly ipv6Network?: Ip6Net | undefined
  /** This host's IPv6 lease subnet. */
  readonly ipv6Subnet?: Ip6Net | undefined
  /** `--ip-masq`: install the masquerade rules. Default false. */
  readonly ipMasq?: boolean | undefined
  /** `--iptables-forward-rules`: install the forward rules. Default true. */
  readonly forwardRules?: boolean | undefined
  /**
   * Append `--random-fully` / `fully-random`. Default: when the tools support
   * it (`--ip-masq-fully-random-disable` sets false).
   */
  readonly fullyRandom?: boolean | undefined
  /** `EnableNFTables`: one owned nftables table per IP version instead of iptables chains. */
  readonly nftables?: boolean | undefined
  /** `--iptables-resync` in milliseconds (iptables mode); default 5000, 0 turns the check off. */
  readonly resyncIntervalMs?: number | undefined
  /** How the tools are run; default directly. */
  readonly run?: CommandRunner | undefined
  /** Logger; silent by default. */
  readonly logger?: Logger | undefined
}

/** What {@link HostRules} reports from its periodic check. */
export type HostRulesEvent =
  | { readonly type: 'repaired'; readonly detail: string }
  | { readonly type: 'warning'; readonly message: string; readonly error?: unknown }

interface Family {
  readonly version: IpVersion
  readonly nets: RuleNetworks
  readonly save: string
  readonly restore: string
}

/**
 * flannel's masquerade and forward rules on this host (spec: core.md 9):
 * applied atomically (one `iptables-restore --noflush` per table, or one
 * `nft -f` per IP version), re-checked every `resyncIntervalMs` in iptables
 * mode, and removed exactly on {@link HostRules.stop}. Applying twice is
 * harmless: chains are flushed and refilled, jump rules deleted and
 * re-appended.
 */
export class HostRules {
  private readonly opts: HostRulesOptions
  private readonly run: CommandRunner
  private readonly logger: Logger
  private readonly families: Family[]
  private readonly subject = new Subject<HostRulesEvent>()
  private timer: NodeJS.Timeout | undefined
  private queue: Promise<unknown> = Promise.resolve()
  private fullyRandom: boolean | undefined

  /** Repairs and warnings of the periodic check. */
  readonly events: Observable<HostRulesEvent> = this.subject.asObservable()

  constructor(options: HostRulesOptions) {
    this.opts = options
    this.run = options.run ?? runCommand
    this.logger = options.logger ?? silentLogger
    this.families = []
    if (options.network && options.subnet) {
      this.families.push({
        version: 4,
        nets: { network: options.network, subnet: options.subnet },
        save: 'iptables-save',
        restore: 'iptables-restore',
      })
    }
    if (options.ipv6Network && options.ipv6Subnet) {
      this.families.push({
        version: 6,
        nets: { network: options.ipv6Network, subnet: options.ipv6Subnet },
        save: 'ip6tables-save',
        restore: 'ip6tables-restore',
      })
    }
  }

  /** The iptables chains this instance writes for an IP version (for inspection and tests). */
  async chains(version: IpVersion): Promise<IptablesChain[]> {
    const family = this.families.find((f) => f.version === version)
    if (!family) return []
    const random = await this.useFullyRandom()
    return this.chainsOf(family, random)
  }

  /**
   * Removes the other mode's state (nftables tables in iptables mode, the
   * iptables chains in nftables mode), applies the rules and starts the
   * periodic check.
   */
  async start(): Promise<void> {
    await this.serial(async () => {
      if (this.opts.nftables) {
        for (const f of this.families) await this.removeIptables(f, true)
        for (const f of this.families) await this.applyNft(f)
      } else {
        for (const f of this.families)
          await this.run('nft', ['-f', '-'], nftablesDeleteScript(f.version)).catch(() => undefined)
        for (const f of this.families) await this.applyIptables(f)
      }
    })
    const interval = this.opts.resyncIntervalMs ?? 5000
    if (!this.opts.nftables && interval > 0 && !this.timer) {
      this.timer = setInterval(() => {
        this.check().catch((error: unknown) =>
          this.subject.next({
            type: 'warning',
            message: 'checking the iptables rules failed',
            error,
          }),
        )
      }, interval)
      this.timer.unref()
    }
  }

  /**
   * Checks that every chain and rule is in place (iptables mode) and
   * re-applies everything when something is missing. Resolves true when it
   * had to repair.
   */
  async check(): Promise<boolean> {
    if (this.opts.nftables) return false
    return this.serial(async () => {
      let repaired = false
      const random = await this.useFullyRandom()
      for (const f of this.families) {
        for (const chain of this.chainsOf(f, random)) {
          const saved = await this.run(f.save, ['-t', chain.table])
          if (chainIntact(saved, chain)) continue
          this.logger.warn(
            { chain: chain.chain, version: f.version },
            'flannel iptables rules missing; re-applying',
          )
          await this.applyIptables(f)
          this.subject.next({
            type: 'repaired',
            detail: `IPv${f.version} ${chain.table} ${chain.chain}`,
          })
          repaired = true
          break
        }
      }
      return repaired
    })
  }

  /** Stops the periodic check and removes every rule, chain and table this instance owns. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    await this.serial(async () => {
      for (const f of this.families) {
        if (this.opts.nftables) await this.run('nft', ['-f', '-'], nftablesDeleteScript(f.version))
        else await this.removeIptables(f, false)
      }
    })
    this.subject.complete()
  }

  private chainsOf(f: Family, random: boolean): IptablesChain[] {
    const chains: IptablesChain[] = []
    if (this.opts.ipMasq) chains.push(masqueradeChain(f.nets, random))
    if (this.opts.forwardRules ?? true) chains.push(forwardChain(f.nets.network))
    return chains
  }

  private async applyIptables(f: Family): Promise<void> {
    const random = await this.useFullyRandom()
    for (const chain of this.chainsOf(f, random)) {
      const saved = await this.run(f.save, ['-t', chain.table])
      const jumps = countLines(saved, chain.jump)
      const input = [
        `*${chain.table}`,
        `:${chain.chain} - [0:0]`,
        ...Array.from({ length: jumps }, () => chain.jump.replace(/^-A /, '-D ')),
        chain.jump,
        ...chain.rules,
        'COMMIT',
        '',
      ].join('\n')
      await this.run(f.restore, ['--noflush', '--wait'], input)
    }
  }

  /** Removes flannel's chains; with `all`, both chains whatever the options say. */
  private async removeIptables(f: Family, all: boolean): Promise<void> {
    const random = await this.useFullyRandom().catch(() => true)
    const wanted = all
      ? [masqueradeChain(f.nets, random), forwardChain(f.nets.network)]
      : this.chainsOf(f, random)
    for (const chain of wanted) {
      let saved: string
      try {
        saved = await this.run(f.save, ['-t', chain.table])
      } catch (error) {
        if (all) continue // no iptables on this host: nothing to clean
        throw error
      }
      const jumps = countLines(saved, chain.jump)
      const exists = saved.split('\n').some((l) => l.startsWith(`:${chain.chain} `))
      if (jumps === 0 && !exists) continue
      const input = [
        `*${chain.table}`,
        ...Array.from({ length: jumps }, () => chain.jump.replace(/^-A /, '-D ')),
        ...(exists ? [`:${chain.chain} - [0:0]`, `-X ${chain.chain}`] : []),
        'COMMIT',
        '',
      ].join('\n')
      await this.run(f.restore, ['--noflush', '--wait'], input)
    }
  }

  private async applyNft(f: Family): Promise<void> {
    const script = nftablesScript({
      ...f.nets,
      masquerade: this.opts.ipMasq ?? false,
      forward: this.opts.forwardRules ?? true,
      fullyRandom: await this.useFullyRandom(),
    })
    await this.run('nft', ['-f', '-'], script)
  }

  private async useFullyRandom(): Promise<boolean> {
    if (this.opts.fullyRandom !== undefined) return this.opts.fullyRandom
    if (this.fullyRandom === undefined) {
      if (this.opts.nftables) this.fullyRandom = true
      else {
        // --random-fully needs iptables >= 1.6.2.
        const version = await this.run('iptables', ['--version']).catch(() => '')
        const m = /v(\d+)\.(\d+)\.(\d+)/.exec(version)
        const n = m ? Number(m[1]) * 10000 + Number(m[2]) * 100 + Number(m[3]) : 0
        this.fullyRandom = n >= 10602
      }
    }
    return this.fullyRandom
  }

  private serial<T>(job: () => Promise<T>): Promise<T> {
    const result = this.queue.then(job)
    this.queue = result.catch(() => undefined)
    return result
  }
}

function countLines(text: string, line: string): number {
  return text.split('\n').filter((l) => l === line).length
}

/** True when the jump exists and the chain holds exactly `rules`, in order. */
function chainIntact(saved: string, chain: IptablesChain): boolean {
  const lines = saved.split('\n')
  if (!lines.includes(chain.jump)) return false
  if (!lines.some((l) => l.startsWith(`:${chain.chain} `))) return false
  const inChain = lines.filter((l) => l.startsWith(`-A ${chain.chain} `))
  return inChain.length === chain.rules.length && inChain.every((l, i) => l === chain.rules[i])
}
