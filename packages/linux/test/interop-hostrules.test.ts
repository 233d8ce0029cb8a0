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
import { HostRules, type CommandRunner } from '../src/index.js'
import { CommandError } from '../src/backend/index.js'

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

    const V6_NETWORK = 'fd00:10:244::/56'
    const CASES = [
      { name: 'ipt', nftables: false, ipv6: false },
      { name: 'nft', nftables: true, ipv6: false },
      { name: 'ipt6', nftables: false, ipv6: true },
      { name: 'nft6', nftables: true, ipv6: true },
    ] as const

    /** The listings to compare: `<cmd> -t <table> -S`, or the nft tables. */
    async function listings(ns: Netns, nftables: boolean, ipv6: boolean): Promise<string[]> {
      if (nftables) {
        const tables = [['ip', 'flannel-ipv4'], ...(ipv6 ? [['ip6', 'flannel-ipv6']] : [])]
        return Promise.all(
          tables.map(([family, table]) => ns.exec('nft', 'list', 'table', family!, table!)),
        )
      }
      const out: string[] = []
      for (const cmd of ipv6 ? ['iptables', 'ip6tables'] : ['iptables']) {
        for (const table of ['nat', 'filter']) {
          out.push(`${cmd} -t ${table} -S\n${(await listRules(ns, cmd, table)).join('\n')}`)
        }
      }
      return out
    }

    it.each(CASES)(
      '$name: identical rules (nftables $nftables, dual-stack $ipv6)',
      async ({ name, nftables, ipv6 }) => {
        const config = {
          Network: '10.244.0.0/16',
          ...(ipv6 ? { EnableIPv6: true, IPv6Network: V6_NETWORK } : {}),
          ...(nftables ? { EnableNFTables: true } : {}),
          Backend: { Type: 'alloc' },
        }
        const theirs = await flanneldWithRules(name, JSON.stringify(config))
        if (ipv6) expect(theirs.ipv6Subnet).toBeDefined()
        const ours = await Netns.create(`${p}-${name}b`)
        spaces.push(ours)
        const rules = new HostRules({
          network: Ip4Net.parse('10.244.0.0/16'),
          subnet: theirs.subnet,
          ...(ipv6 ? { ipv6Network: Ip6Net.parse(V6_NETWORK), ipv6Subnet: theirs.ipv6Subnet } : {}),
          ipMasq: true,
          nftables,
          run: runIn(ours),
          resyncIntervalMs: 0,
        })
        try {
          await rules.start()
          const flanneld = await listings(theirs.ns, nftables, ipv6)
          console.info(`flanneld (${name}):\n${flanneld.join('\n')}`)
          for (const text of flanneld) expect(text).toMatch(/flannel/i)
          expect(await listings(ours, nftables, ipv6)).toEqual(flanneld)
        } finally {
          await rules.stop()
          await theirs.stop()
        }
      },
    )
  },
)
