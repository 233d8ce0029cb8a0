import { isFlannelError, silentLogger, type Ip4Net, type Ip6Net, type Logger } from '@flannel/core'
import { Subject, type Observable } from 'rxjs'
import { runCommand, type CommandRunner } from './command.js'
import { withRetry } from './serial.js'
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
  /**
   * How a failed commit (an `iptables-restore` or `nft -f` that another
   * process's change made fail, or a busy lock) is retried: up to `attempts`
   * tries (default 6), waiting about `baseMs` (default 100), then twice as
   * long each time, with jitter. Every retry is logged.
   */
  readonly retry?: { readonly attempts?: number; readonly baseMs?: number } | undefined
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
 * mode, and removed exactly on {@link HostRules.stop}.
 *
 * Other processes may change the same tables at the same time (several
 * agents in one network namespace, kube-proxy, an admin). Each commit is
 * therefore built from a fresh read of the table and is right whatever
 * happened in between: flannel's chain is declared (created or flushed) and
 * refilled inside the transaction, and the jump into it is appended only
 * when the read found none and left alone when it found one, so neither
 * depends on rules that may be gone by the time the commit runs. Only
 * surplus jumps (two processes that both appended one) are deleted by
 * count; such a commit, or one that hit a busy lock, fails as a whole and is
 * retried with backoff on a new read. Applying twice is harmless.
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
  private stopping = false
  private queuedCheck: Promise<boolean> | undefined

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
   *
   * In iptables mode a commit that still fails after its retries does not
   * reject: it is logged and reported as a `warning` event, and the next
   * {@link HostRules.check} (periodic or called by the owner) applies the
   * rules again; flanneld, too, keeps running when its bootstrap fails. In
   * nftables mode (one self-contained `nft -f` per IP version) a failure left
   * after the retries rejects, as flanneld exits then.
   */
  async start(): Promise<void> {
    this.stopping = false
    await this.serial(async () => {
      if (this.opts.nftables) {
        for (const f of this.families) {
          await this.orWarn(`removing the IPv${f.version} iptables chains`, () =>
            this.removeIptables(f, true),
          )
        }
        for (const f of this.families) await this.applyNft(f)
      } else {
        for (const f of this.families)
          await this.run('nft', ['-f', '-'], nftablesDeleteScript(f.version)).catch(() => undefined)
        for (const f of this.families) {
          await this.orWarn(`applying the IPv${f.version} iptables rules`, () =>
            this.applyIptables(f),
          )
        }
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
   *
   * A call made while an earlier check waits to start joins that one (it
   * will read the tables after the call anyway), so a periodic check whose
   * runs take longer than its interval never piles up work for `stop()`.
   */
  check(): Promise<boolean> {
    if (this.opts.nftables) return Promise.resolve(false)
    if (this.queuedCheck) return this.queuedCheck
    const queued = this.serial(async () => {
      this.queuedCheck = undefined
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
    this.queuedCheck = queued
    return queued
  }

  /** Stops the periodic check and removes every rule, chain and table this instance owns. */
  async stop(): Promise<void> {
    clearInterval(this.timer)
    this.timer = undefined
    this.stopping = true
    await this.serial(async () => {
      for (const f of this.families) {
        if (this.opts.nftables) {
          await this.retried(
            `nft -f (IPv${f.version})`,
            () => false,
            () => this.run('nft', ['-f', '-'], nftablesDeleteScript(f.version)),
          )
        } else await this.removeIptables(f, false)
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

  /** Applies every chain of a family, one retried commit per table; rethrows the first failure after trying all. */
  private async applyIptables(f: Family): Promise<void> {
    const random = await this.useFullyRandom()
    let failure: { error: unknown } | undefined
    for (const chain of this.chainsOf(f, random)) {
      try {
        await this.applyChain(f, chain)
      } catch (error) {
        failure ??= { error }
      }
    }
    if (failure) throw failure.error
  }

  /**
   * Makes one chain and its jump exact. A commit that appended the jump is
   * followed by a second read: another process may have appended its own at
   * the same moment, and whoever sees two deletes the surplus. So once every
   * concurrent apply has returned, exactly one jump is left.
   */
  private async applyChain(f: Family, chain: IptablesChain): Promise<void> {
    let appended = false
    await this.commit(f, chain.table, (saved) => {
      appended = countLines(saved, chain.jump) !== 1
      return applyScript(saved, chain)
    })
    if (!appended) return
    await this.commit(f, chain.table, (saved) =>
      countLines(saved, chain.jump) > 1 ? applyScript(saved, chain) : undefined,
    )
  }

  /**
   * One `iptables-restore --noflush` transaction on `table`, built by `script`
   * from the table as `iptables-save` prints it right before (undefined:
   * nothing to do). A failed commit is retried on a new read, with backoff,
   * until it succeeds, the attempts are used up or `stopped()` (default: this
   * instance is stopping) says to give up.
   */
  private async commit(
    f: Family,
    table: string,
    script: (saved: string) => string | undefined,
    stopped: () => boolean = () => this.stopping,
  ): Promise<void> {
    await this.retried(`${f.restore} (${table})`, stopped, async () => {
      const input = script(await this.run(f.save, ['-t', table]))
      if (input !== undefined) await this.run(f.restore, ['--noflush', '--wait'], input)
    })
  }

  /** Runs `job` with this instance's retry settings, logging each retry. */
  private retried<T>(what: string, stopped: () => boolean, job: () => Promise<T>): Promise<T> {
    const attempts = this.opts.retry?.attempts ?? 6
    const baseMs = this.opts.retry?.baseMs ?? 100
    return withRetry(job, attempts, baseMs, stopped, {
      // A missing tool stays missing.
      retryable: (error) => !isFlannelError(error, 'COMMAND_NOT_FOUND'),
      onRetry: (error, attempt, waitMs) =>
        this.logger.warn(
          { err: error, attempt, attempts, retryInMs: Math.round(waitMs) },
          `${what} failed; retrying`,
        ),
    })
  }

  /** Runs `job`; a failure is logged and reported as a warning event instead of thrown. */
  private async orWarn(what: string, job: () => Promise<void>): Promise<void> {
    try {
      await job()
    } catch (error) {
      this.logger.warn({ err: error }, `${what} failed; the next check tries again`)
      this.subject.next({ type: 'warning', message: `${what} failed`, error })
    }
  }

  /** Removes flannel's chains; with `all`, both chains whatever the options say. */
  private async removeIptables(f: Family, all: boolean): Promise<void> {
    const random = await this.useFullyRandom().catch(() => true)
    const wanted = all
      ? [masqueradeChain(f.nets, random), forwardChain(f.nets.network)]
      : this.chainsOf(f, random)
    for (const chain of wanted) {
      try {
        // Removal goes on while stopping: that is what stop() is for.
        await this.commit(
          f,
          chain.table,
          (saved) => removeScript(saved, chain),
          () => false,
        )
      } catch (error) {
        // No iptables on this host: nothing of the other mode to clean.
        if (all && isFlannelError(error, 'COMMAND_NOT_FOUND')) continue
        throw error
      }
    }
  }

  private async applyNft(f: Family): Promise<void> {
    const script = nftablesScript({
      ...f.nets,
      masquerade: this.opts.ipMasq ?? false,
      forward: this.opts.forwardRules ?? true,
      fullyRandom: await this.useFullyRandom(),
    })
    // The script creates or flushes what it fills, so it is right whatever is there now.
    await this.retried(
      `nft -f (IPv${f.version})`,
      () => this.stopping,
      () => this.run('nft', ['-f', '-'], script),
    )
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

function deleteOf(rule: string): string {
  return rule.replace(/^-A /, '-D ')
}

/**
 * The restore script that makes `chain` exact, given the table as read just
 * before. The chain is declared (created, or flushed) and refilled, which is
 * right whatever it holds when the commit runs. The jump is appended when the
 * read found none and not touched when it found one: a commit never deletes a
 * jump that another process may have deleted (or moved) meanwhile, which
 * would fail it. Surplus jumps (two processes appended at once) are deleted
 * and one appended; if a concurrent commit changed their number, this one
 * fails as a whole and is retried on a new read, and no commit leaves less
 * than one jump.
 */
function applyScript(saved: string, chain: IptablesChain): string {
  const jumps = countLines(saved, chain.jump)
  const jumpLines =
    jumps === 1 ? [] : [...Array.from({ length: jumps }, () => deleteOf(chain.jump)), chain.jump]
  return [
    `*${chain.table}`,
    `:${chain.chain} - [0:0]`,
    ...jumpLines,
    ...chain.rules,
    'COMMIT',
    '',
  ].join('\n')
}

/**
 * The restore script that removes `chain` and every jump into it, or
 * undefined when the read found neither. It deletes as many jumps as it read;
 * if that changed meanwhile, the commit fails as a whole and is retried.
 */
function removeScript(saved: string, chain: IptablesChain): string | undefined {
  const jumps = countLines(saved, chain.jump)
  const exists = saved.split('\n').some((l) => l.startsWith(`:${chain.chain} `))
  if (jumps === 0 && !exists) return undefined
  return [
    `*${chain.table}`,
    ...Array.from({ length: jumps }, () => deleteOf(chain.jump)),
    ...(exists ? [`:${chain.chain} - [0:0]`, `-X ${chain.chain}`] : []),
    'COMMIT',
    '',
  ].join('\n')
}

/** True when there is exactly one jump and the chain holds exactly `rules`, in order. */
function chainIntact(saved: string, chain: IptablesChain): boolean {
  const lines = saved.split('\n')
  if (countLines(saved, chain.jump) !== 1) return false
  if (!lines.some((l) => l.startsWith(`:${chain.chain} `))) return false
  const inChain = lines.filter((l) => l.startsWith(`-A ${chain.chain} `))
  return inChain.length === chain.rules.length && inChain.every((l, i) => l === chain.rules[i])
}
