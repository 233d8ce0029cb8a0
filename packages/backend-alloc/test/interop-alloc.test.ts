/**
 * AllocBackend vs real flanneld's alloc backend (interop.md 2, item 2): for
 * the same config and interface, the attrs our backend publishes must encode
 * to the bytes flanneld stores, and our MTU must be flanneld's FLANNEL_MTU.
 * Skipped with a printed reason when no flanneld binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, readFile, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { NEVER } from 'rxjs'
import { parseNetworkConfig, type LeaseAttrs, type SubnetRegistry } from '@flannel/core'
import { encodeLeaseAttrs, parseSubnetKey } from '@flannel/core/registry'
import {
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  dumpSubnets,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'
import { AllocBackend } from '../src/index.js'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-alloc (backend): skipped: ${skipReason}`)

describe.skipIf(skipReason !== undefined)(
  `AllocBackend vs real flanneld alloc${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const dev = `${p}b0`
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let ns: Netns
    let dir: string
    let index: number

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-allocb-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      ns = await Netns.create(`${p}-ab`)
      await ns.addBridge(dev, '192.0.2.11/24')
      await ns.ip('addr', 'add', '2001:db8::11/64', 'dev', dev, 'nodad')
      const [link] = JSON.parse(await ns.ip('-j', 'link', 'show', dev)) as { ifindex: number }[]
      index = link!.ifindex
    }, 60_000)

    afterAll(async () => {
      await ns?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    /** flanneld's stored value and FLANNEL_MTU, and ours, for one config. */
    async function compare(name: string, configText: string) {
      const prefix = `/${name}/network`
      await client.put(`${prefix}/config`).value(configText)
      const subnetFile = join(dir, `${name}.env`)
      const f = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: prefix,
        iface: dev,
        subnetFile,
        extraArgs: ['--iptables-forward-rules=false'],
      })
      try {
        await f.waitForLog(SUBNET_FILE_WRITTEN)
      } finally {
        await f.stop()
      }
      const [stored] = await dumpSubnets(client, prefix)
      const theirMtu = Number(/FLANNEL_MTU=(\d+)/.exec(await readFile(subnetFile, 'utf8'))?.[1])

      let published: LeaseAttrs | undefined
      const registry: SubnetRegistry = {
        getNetworkConfig: async () => parseNetworkConfig(configText),
        acquireLease: async (attrs) => {
          published = attrs
          const key = parseSubnetKey(stored!.key)!
          return { ...key, attrs, expiration: new Date() }
        },
        renewLease: async (lease) => lease,
        releaseLease: async () => {},
        watchLeases: () => NEVER,
        close: async () => {},
      }
      const backend = new AllocBackend({
        registry,
        extIface: {
          name: dev,
          index,
          mtu: 1500,
          ifaceAddr: '192.0.2.11',
          ifaceV6Addr: '2001:db8::11',
          extAddr: '192.0.2.11',
          extV6Addr: '2001:db8::11',
        },
      })
      const network = await backend.registerNetwork(parseNetworkConfig(configText))
      return {
        theirs: { value: stored!.value, mtu: theirMtu },
        ours: { value: encodeLeaseAttrs(published!), mtu: network.mtu },
      }
    }

    it('IPv4: same value bytes and MTU', async () => {
      const r = await compare('ab4', '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}')
      expect(r.ours).toEqual(r.theirs)
    })

    // flanneld v0.28.10's alloc backend publishes only PublicIP
    // (`"PublicIPv6":null`) even in dual-stack mode; so does AllocBackend.
    it('dual-stack: same value bytes and MTU', async () => {
      const r = await compare(
        'ab6',
        '{"Network":"10.244.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56","Backend":{"Type":"alloc"}}',
      )
      console.info(`alloc dual-stack: flanneld ${r.theirs.value} / ours ${r.ours.value}`)
      expect(r.ours).toEqual(r.theirs)
    })
  },
)
