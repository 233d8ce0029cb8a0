import { spawn } from 'node:child_process'
import { Ip4Net, Ip6Net, silentLogger, type Logger } from '@flannel/core'
import { firstValueFrom, timeout } from 'rxjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { HostRules, type CommandRunner } from '../src/index.js'
import { CommandError } from '../src/backend/index.js'
import { Namespaces, inNs, kernelTestsUnavailable, runPrefix, sh } from './helpers/netns.js'

async function toolsMissing(): Promise<string | undefined> {
  for (const tool of ['iptables-restore', 'iptables-save', 'ip6tables-restore', 'nft']) {
    try {
      await sh('sh', ['-c', `command -v ${tool}`])
    } catch {
      return `${tool} is not installed`
    }
  }
  return undefined
}

const unavailable = (await kernelTestsUnavailable()) ?? (await toolsMissing())
if (unavailable) console.warn(`HostRules namespace tests skipped: ${unavailable}`)

/** Runs the tools inside the test's namespace only. */
function runIn(ns: string): CommandRunner {
  return (command, args, input) =>
    new Promise((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', ns, command, ...args])
      let out = ''
      let err = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.stderr.on('data', (d: Buffer) => (err += d.toString()))
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new CommandError(command, code ?? -1, err)),
      )
      child.stdin.on('error', () => undefined) // tools that do not read stdin may exit first
      child.stdin.end(input ?? '')
    })
}

/** The rule lines of a table in iptables-save output (no counters, comments or chain policies). */
async function ruleLines(ns: string, tool: string, table: string): Promise<string[]> {
  const out = await inNs(ns, tool, ['-t', table])
  return out
    .split('\n')
    .filter((l) => l.startsWith('-A ') || (l.startsWith(':') && !/^:[A-Z]+ (ACCEPT|DROP)/.test(l)))
}

/**
 * Runs the tools in `ns`, but the next `remaining` runs of `tool` fail as a
 * busy lock does (exit 4) without touching anything.
 */
function flaky(
  ns: string,
  tool: string,
  remaining: number,
): CommandRunner & { remaining: number; failed: number } {
  const real = runIn(ns)
  const runner = Object.assign(
    async (command: string, args: readonly string[], input?: string) => {
      if (command === tool && runner.remaining > 0) {
        runner.remaining--
        runner.failed++
        throw new CommandError(command, 4, 'Another app is currently holding the xtables lock.')
      }
      return real(command, args, input)
    },
    { remaining, failed: 0 },
  )
  return runner
}

/** A logger that keeps the messages of warn lines. */
function warnLog(): Logger & { lines: string[] } {
  const lines: string[] = []
  const logger: Logger & { lines: string[] } = {
    ...silentLogger,
    warn: (_obj: unknown, msg?: string) => void lines.push(msg ?? ''),
    child: () => logger,
    lines,
  }
  return logger
}

const network = Ip4Net.parse('10.244.0.0/16')
const subnet = Ip4Net.parse('10.244.1.0/24')

describe.skipIf(unavailable !== undefined)(
  `HostRules in a network namespace${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const ns = `${prefix}-rules`

    beforeAll(async () => {
      await namespaces.create(ns)
    })
    afterAll(async () => {
      await namespaces.removeAll()
    })

    it('iptables: writes flanneld chains, comments and order; idempotent; repairs; removes exactly on stop', async () => {
      const before = {
        nat: await ruleLines(ns, 'iptables-save', 'nat'),
        filter: await ruleLines(ns, 'iptables-save', 'filter'),
      }
      const rules = new HostRules({
        network,
        subnet,
        ipMasq: true,
        run: runIn(ns),
        resyncIntervalMs: 50,
      })
      await rules.start()
      await rules.start() // idempotent
      const nat = [
        ':FLANNEL-POSTRTG - [0:0]',
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.1.0/24 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.1.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.244.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
        '-A FLANNEL-POSTRTG ! -s 10.244.0.0/16 -d 10.244.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      ]
      const filter = [
        ':FLANNEL-FWD - [0:0]',
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      ]
      expect(await ruleLines(ns, 'iptables-save', 'nat')).toEqual(nat)
      expect(await ruleLines(ns, 'iptables-save', 'filter')).toEqual(filter)
      expect(await rules.check()).toBe(false)

      // Delete one rule by hand: the periodic check puts everything back in order.
      const repaired = firstValueFrom(rules.events.pipe(timeout(3000)))
      await inNs(ns, 'iptables', [
        '-t',
        'nat',
        '-D',
        'FLANNEL-POSTRTG',
        '-s',
        '10.244.0.0/16',
        '-d',
        '10.244.1.0/24',
        '-m',
        'comment',
        '--comment',
        'flanneld masq',
        '-j',
        'RETURN',
      ])
      expect(await repaired).toEqual({ type: 'repaired', detail: 'IPv4 nat FLANNEL-POSTRTG' })
      expect(await ruleLines(ns, 'iptables-save', 'nat')).toEqual(nat)

      await rules.stop()
      expect(await ruleLines(ns, 'iptables-save', 'nat')).toEqual(before.nat)
      expect(await ruleLines(ns, 'iptables-save', 'filter')).toEqual(before.filter)
    })

    it('iptables: forward rules only by default, no --random-fully when disabled, IPv6 with ff00::/8', async () => {
      const rules = new HostRules({
        network,
        subnet,
        ipv6Network: Ip6Net.parse('fd00:10::/56'),
        ipv6Subnet: Ip6Net.parse('fd00:10:0:1::/64'),
        ipMasq: true,
        fullyRandom: false,
        run: runIn(ns),
        resyncIntervalMs: 0,
      })
      await rules.start()
      const v6 = await ruleLines(ns, 'ip6tables-save', 'nat')
      expect(v6).toContain(
        '-A FLANNEL-POSTRTG -s fd00:10::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE',
      )
      expect(
        (await ruleLines(ns, 'iptables-save', 'nat')).some((l) => l.includes('--random-fully')),
      ).toBe(false)
      await rules.stop()
      expect((await inNs(ns, 'ip6tables-save', [])).includes('flanneld')).toBe(false)

      const fwdOnly = new HostRules({ network, subnet, run: runIn(ns), resyncIntervalMs: 0 })
      await fwdOnly.start()
      expect(await ruleLines(ns, 'iptables-save', 'nat')).toEqual([])
      expect((await ruleLines(ns, 'iptables-save', 'filter')).length).toBe(4)
      await fwdOnly.stop()
      expect(await ruleLines(ns, 'iptables-save', 'filter')).toEqual([])
    })

    it('a failed commit is retried with a log line; after the last attempt start warns instead of failing and check applies later', async () => {
      const logger = warnLog()
      const once = flaky(ns, 'iptables-restore', 2)
      const rules = new HostRules({
        network,
        subnet,
        ipMasq: true,
        run: once,
        logger,
        resyncIntervalMs: 0,
      })
      const events: unknown[] = []
      rules.events.subscribe((e) => events.push(e))
      await rules.start()
      expect(once.failed).toBe(2)
      expect(logger.lines.filter((l) => l.endsWith('failed; retrying'))).toHaveLength(2)
      expect(events).toEqual([])
      expect((await ruleLines(ns, 'iptables-save', 'nat')).length).toBe(8)
      expect((await ruleLines(ns, 'iptables-save', 'filter')).length).toBe(4)
      await rules.stop()

      const always = flaky(ns, 'iptables-restore', Infinity)
      const stuck = new HostRules({
        network,
        subnet,
        ipMasq: true,
        run: always,
        retry: { attempts: 3, baseMs: 1 },
        logger: warnLog(),
        resyncIntervalMs: 0,
      })
      const warnings: unknown[] = []
      stuck.events.subscribe((e) => warnings.push(e))
      await stuck.start() // resolves: the agent keeps running
      expect(always.failed).toBe(6) // 3 attempts for nat, 3 for filter
      expect(warnings).toEqual([
        expect.objectContaining({
          type: 'warning',
          message: 'applying the IPv4 iptables rules failed',
        }),
      ])
      expect(await ruleLines(ns, 'iptables-save', 'nat')).toEqual([])
      // The lock is free again: the next check puts everything in place.
      always.remaining = 0
      expect(await stuck.check()).toBe(true)
      expect((await ruleLines(ns, 'iptables-save', 'nat')).length).toBe(8)
      expect((await ruleLines(ns, 'iptables-save', 'filter')).length).toBe(4)
      await stuck.stop()

      const nft = flaky(ns, 'nft', 3) // the first three tries of the apply
      const nftRules = new HostRules({
        network,
        subnet,
        nftables: true,
        run: nft,
        retry: { baseMs: 1 },
      })
      await nftRules.start()
      expect(nft.failed).toBe(3)
      expect(await inNs(ns, 'nft', ['list', 'tables'])).toContain('flannel-ipv4')
      await nftRules.stop()
    })

    it('checks asked for while one waits to start are one check (a slow periodic check does not pile up)', async () => {
      const real = runIn(ns)
      let saves = 0
      const counting: CommandRunner = (command, args, input) => {
        if (command === 'iptables-save') saves++
        return real(command, args, input)
      }
      const rules = new HostRules({
        network,
        subnet,
        ipMasq: true,
        run: counting,
        resyncIntervalMs: 0,
      })
      await rules.start()
      saves = 0
      const results = await Promise.all(Array.from({ length: 5 }, () => rules.check()))
      expect(results).toEqual([false, false, false, false, false])
      expect(saves).toBe(2) // one check: one read of nat, one of filter
      await rules.stop()
    })

    describe('many instances in one namespace applying at once (issue: several agents per namespace)', () => {
      const count = 16
      const warnings: unknown[] = []
      let shared: string
      const make = (i: number, nftables: boolean) => {
        const rules = new HostRules({
          network,
          subnet: Ip4Net.parse(`10.244.${i + 1}.0/24`),
          ipMasq: true,
          nftables,
          run: runIn(shared),
          resyncIntervalMs: 0,
        })
        rules.events.subscribe((e) => e.type === 'warning' && warnings.push(e))
        return rules
      }
      const jumps = (lines: string[]) => lines.filter((l) => /^-A (POSTROUTING|FORWARD) /.test(l))

      beforeAll(async () => {
        shared = await namespaces.create(`${prefix}-many`)
      })

      it('iptables: none fails, one jump per built-in chain, exact chains; stopping together leaves nothing', async () => {
        warnings.length = 0
        const all = Array.from({ length: count }, (_, i) => make(i, false))
        await Promise.all(all.map((r) => r.start()))
        expect(warnings).toEqual([])
        const nat = await ruleLines(shared, 'iptables-save', 'nat')
        expect(jumps(nat)).toEqual([
          '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
        ])
        expect(await ruleLines(shared, 'iptables-save', 'filter')).toEqual([
          ':FLANNEL-FWD - [0:0]',
          '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
          '-A FLANNEL-FWD -s 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
          '-A FLANNEL-FWD -d 10.244.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        ])
        // The masquerade chain holds exactly one instance's rules (the last commit wins).
        const chain = nat.filter((l) => l.startsWith('-A FLANNEL-POSTRTG '))
        const sets = await Promise.all(all.map(async (r) => (await r.chains(4))[0]!.rules))
        expect(sets).toContainEqual(chain)
        await Promise.all(all.map((r) => r.stop()))
        expect(warnings).toEqual([])
        expect(await inNs(shared, 'iptables-save', [])).not.toContain('flanneld')
      })

      it('nftables: each removes the iptables chains left behind and fills its table; none fails', async () => {
        warnings.length = 0
        const leftover = make(0, false)
        await leftover.start()
        expect(await inNs(shared, 'iptables-save', [])).toContain('FLANNEL-POSTRTG')
        const all = Array.from({ length: count }, (_, i) => make(i, true))
        await Promise.all(all.map((r) => r.start()))
        expect(warnings).toEqual([])
        expect(await inNs(shared, 'iptables-save', [])).not.toContain('FLANNEL')
        const table = await inNs(shared, 'nft', ['list', 'table', 'ip', 'flannel-ipv4'])
        // One instance's six masquerade rules and the two forward rules, nothing twice.
        const rulesIn = table
          .split('\n')
          .map((l) => l.trim())
          .filter((l) => /^(ip|meta) /.test(l))
        expect(rulesIn).toHaveLength(8)
        expect(rulesIn.slice(6)).toEqual([
          'ip saddr 10.244.0.0/16 accept',
          'ip daddr 10.244.0.0/16 accept',
        ])
        await Promise.all(all.map((r) => r.stop()))
        expect(warnings).toEqual([])
        expect(await inNs(shared, 'nft', ['list', 'tables'])).not.toContain('flannel-ipv4')
      })
    })

    it('nftables: one owned table, iptables state of the other mode cleaned, table deleted on stop', async () => {
      const ipt = new HostRules({
        network,
        subnet,
        ipMasq: true,
        run: runIn(ns),
        resyncIntervalMs: 0,
      })
      await ipt.start()
      const rules = new HostRules({ network, subnet, ipMasq: true, nftables: true, run: runIn(ns) })
      await rules.start()
      await rules.start() // idempotent: flushed and refilled
      expect((await inNs(ns, 'iptables-save', [])).includes('FLANNEL')).toBe(false)
      const table = await inNs(ns, 'nft', ['list', 'table', 'ip', 'flannel-ipv4'])
      const lines = table
        .split('\n')
        .map((l) => l.trim())
        .filter(Boolean)
      expect(lines).toEqual([
        'table ip flannel-ipv4 {',
        'comment "rules for flannel-ipv4"',
        'chain postrtg {',
        'comment "chain to manage traffic masquerading by flannel"',
        'type nat hook postrouting priority srcnat; policy accept;',
        'meta mark 0x00004000 return',
        'ip saddr 10.244.1.0/24 ip daddr 10.244.0.0/16 return',
        'ip saddr 10.244.0.0/16 ip daddr 10.244.1.0/24 return',
        'ip saddr != 10.244.1.0/24 ip daddr 10.244.0.0/16 return',
        'ip saddr 10.244.0.0/16 ip daddr != 224.0.0.0/4 masquerade fully-random',
        'ip saddr != 10.244.0.0/16 ip daddr 10.244.0.0/16 masquerade fully-random',
        '}',
        'chain forward {',
        'comment "chain to accept flannel traffic"',
        'type filter hook forward priority filter; policy accept;',
        'ip saddr 10.244.0.0/16 accept',
        'ip daddr 10.244.0.0/16 accept',
        '}',
        '}',
      ])
      await rules.stop()
      expect(await inNs(ns, 'nft', ['list', 'tables'])).not.toContain('flannel-ipv4')
      await expect(rules.check()).resolves.toBe(false)
    })
  },
)
