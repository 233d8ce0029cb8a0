/**
 * Masquerade and forward rules of real flanneld vs our HostRules for the same
 * network and subnet (interop.md 2, item 26; core.md 9): flanneld runs in
 * namespace A (alloc backend, `--ip-masq`), HostRules in namespace B; the
 * rule listings must be identical, in iptables mode and in nftables mode,
 * IPv4-only and dual-stack.
 * Skipped with a printed reason when no flanneld binary is available.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Ip4Net, Ip6Net } from '@flannel/core'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'
import { CommandError, HostRules, type CommandRunner } from '../src/index.js'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-hostrules: skipped: ${skipReason}`)

function runIn(ns: Netns): CommandRunner {
  return (command, args, input) =>
    new Promise((resolve, reject) => {
      const child = spawn('ip', ['netns', 'exec', ns.name, command, ...args])
      let out = ''
      let err = ''
      child.stdout.on('data', (d: Buffer) => (out += d.toString()))
      child.stderr.on('data', (d: Buffer) => (err += d.toString()))
      child.on('close', (code) =>
        code === 0 ? resolve(out) : reject(new CommandError(command, code ?? -1, err)),
      )
      child.stdin.end(input ?? '')
    })
}

/** `iptables -t <table> -S` (or ip6tables) without the built-in chains' policies. */
async function listRules(ns: Netns, cmd: string, table: string): Promise<string[]> {
  const out = await ns.exec(cmd, '-t', table, '-S')
  return out.split('\n').filter((l) => l !== '' && !l.startsWith('-P '))
}

describe.skipIf(skipReason !== undefined)(
  `host rules: real flanneld vs HostRules${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let dir: string
    const spaces: Netns[] = []

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-rules-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
    }, 60_000)

    afterAll(async () => {
      for (const ns of spaces) await ns.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    /** Starts flanneld in a fresh namespace, returns it and its subnet once rules are in place. */
    async function flanneldWithRules(
      name: string,
      config: string,
    ): Promise<{ ns: Netns; subnet: Ip4Net; ipv6Subnet?: Ip6Net; stop: () => Promise<unknown> }> {
      const ns = await Netns.create(`${p}-${name}`)
      spaces.push(ns)
      await ns.addBridge(`${p}${name}0`, '192.0.2.11/24')
      if (config.includes('"EnableIPv6":true')) {
        await ns.ip('addr', 'add', '2001:db8::11/64', 'dev', `${p}${name}0`, 'nodad')
      }
      const prefix = `/${name}/network`
      await client.put(`${prefix}/config`).value(config)
      const f = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: `${p}${name}0`,
        subnetFile: join(dir, `${name}.env`),
        ipMasq: true,
      })
      const allocated = await f.waitForLog(ALLOCATED)
      const subnet = Ip4Net.parse(allocated[1]!)
      await f.waitForLog(SUBNET_FILE_WRITTEN)
      const stop = () => f.stop()
      if (allocated[2] === undefined || allocated[2] === '<nil>') return { ns, subnet, stop }
      return { ns, subnet, ipv6Subnet: Ip6Net.parse(allocated[2]), stop }
    }

    it('iptables mode: identical nat and filter rules', async () => {
      const theirs = await flanneldWithRules(
        'ipt',
        '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}',
      )
      const ours = await Netns.create(`${p}-iptb`)
      spaces.push(ours)
      const rules = new HostRules({
        network: Ip4Net.parse('10.244.0.0/16'),
        subnet: theirs.subnet,
        ipMasq: true,
        run: runIn(ours),
        resyncIntervalMs: 0,
      })
      try {
        await rules.start()
        for (const table of ['nat', 'filter']) {
          const flanneld = await listRules(theirs.ns, 'iptables', table)
          console.info(`flanneld iptables -t ${table} -S:\n${flanneld.join('\n')}`)
          expect(await listRules(ours, 'iptables', table)).toEqual(flanneld)
        }
      } finally {
        await rules.stop()
        await theirs.stop()
      }
    })

    it('nftables mode: identical flannel-ipv4 table', async () => {
      const theirs = await flanneldWithRules(
        'nft',
        '{"Network":"10.244.0.0/16","EnableNFTables":true,"Backend":{"Type":"alloc"}}',
      )
      const ours = await Netns.create(`${p}-nftb`)
      spaces.push(ours)
      const rules = new HostRules({
        network: Ip4Net.parse('10.244.0.0/16'),
        subnet: theirs.subnet,
        ipMasq: true,
        nftables: true,
        run: runIn(ours),
      })
      try {
        await rules.start()
        const flanneld = await theirs.ns.exec('nft', 'list', 'table', 'ip', 'flannel-ipv4')
        console.info(`flanneld nft list table ip flannel-ipv4:\n${flanneld}`)
        expect(await ours.exec('nft', 'list', 'table', 'ip', 'flannel-ipv4')).toBe(flanneld)
      } finally {
        await rules.stop()
        await theirs.stop()
      }
    })

    it('iptables mode, dual-stack: identical iptables and ip6tables rules', async () => {
      const theirs = await flanneldWithRules(
        'ipt6',
        '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"alloc"}}',
      )
      expect(theirs.ipv6Subnet).toBeDefined()
      const ours = await Netns.create(`${p}-ipt6b`)
      spaces.push(ours)
      const rules = new HostRules({
        network: Ip4Net.parse('10.244.0.0/16'),
        subnet: theirs.subnet,
        ipv6Network: Ip6Net.parse('fd00:10:244::/56'),
        ipv6Subnet: theirs.ipv6Subnet,
        ipMasq: true,
        run: runIn(ours),
        resyncIntervalMs: 0,
      })
      try {
        await rules.start()
        for (const cmd of ['iptables', 'ip6tables']) {
          for (const table of ['nat', 'filter']) {
            const flanneld = await listRules(theirs.ns, cmd, table)
            console.info(`flanneld ${cmd} -t ${table} -S:\n${flanneld.join('\n')}`)
            expect(flanneld.some((l) => /flannel/i.test(l))).toBe(true)
            expect(await listRules(ours, cmd, table)).toEqual(flanneld)
          }
        }
      } finally {
        await rules.stop()
        await theirs.stop()
      }
    })

    it('nftables mode, dual-stack: identical flannel-ipv4 and flannel-ipv6 tables', async () => {
      const theirs = await flanneldWithRules(
        'nft6',
        '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","EnableNFTables":true,"Backend":{"Type":"alloc"}}',
      )
      expect(theirs.ipv6Subnet).toBeDefined()
      const ours = await Netns.create(`${p}-nft6b`)
      spaces.push(ours)
      const rules = new HostRules({
        network: Ip4Net.parse('10.244.0.0/16'),
        subnet: theirs.subnet,
        ipv6Network: Ip6Net.parse('fd00:10:244::/56'),
        ipv6Subnet: theirs.ipv6Subnet,
        ipMasq: true,
        nftables: true,
        run: runIn(ours),
      })
      try {
        await rules.start()
        for (const [family, table] of [
          ['ip', 'flannel-ipv4'],
          ['ip6', 'flannel-ipv6'],
        ] as const) {
          const flanneld = await theirs.ns.exec('nft', 'list', 'table', family, table)
          console.info(`flanneld nft list table ${family} ${table}:\n${flanneld}`)
          expect(await ours.exec('nft', 'list', 'table', family, table)).toBe(flanneld)
        }
      } finally {
        await rules.stop()
        await theirs.stop()
      }
    })
  },
)
