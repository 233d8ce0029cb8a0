import { spawn } from 'node:child_process'
import { Ip4Net, Ip6Net } from '@flannel/core'
import { firstValueFrom, timeout } from 'rxjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { CommandError, HostRules, type CommandRunner } from '../src/index.js'
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
