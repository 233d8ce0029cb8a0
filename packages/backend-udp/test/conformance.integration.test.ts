/**
 * udp runs the shared backend conformance suite. The datapath is real: the
 * test's thread moves into a network namespace it created, where the backend
 * opens its TUN device and UDP socket; the TUN's address, MTU and route go to
 * a MemoryHostNetwork, and what the suite reads for a subnet is the native
 * peer table, read back from the addon.
 */
import {
  parseNetworkConfig,
  defineBackend,
  type Network,
  type PreparedNetwork,
} from '@flannel/core'
import { MemoryHostNetwork } from '@flannel/linux/memory'
import { describeBackendConformance } from '@flannel/testkit/conformance'
import { afterAll, beforeAll, describe } from 'vitest'
import {
  Namespaces,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
  sh,
} from '../../linux/test/helpers/netns.js'
import { udp, type UdpNetwork } from '../src/index.js'
import { enterNetns, threadNetnsUnavailable, type ThreadInNetns } from './helpers/thread-netns.js'

const unavailable =
  (await kernelTestsUnavailable()) ??
  (await sh('test', ['-c', '/dev/net/tun'])
    .then(() => undefined)
    .catch(() => '/dev/net/tun is missing')) ??
  (await threadNetnsUnavailable())
if (unavailable) console.warn(`udp backend conformance skipped: ${unavailable}`)

const ADDR = '192.0.2.1'

describe.skipIf(unavailable !== undefined)(
  `udp conformance in a namespace${unavailable ? ` [skipped: ${unavailable}]` : ''}`,
  () => {
    const prefix = runPrefix()
    const device = `${prefix}tun`
    const namespaces = new Namespaces()
    let ns = ''
    let thread: ThreadInNetns | undefined

    beforeAll(async () => {
      ns = await namespaces.create(`${prefix}-udp`)
      // The UDP socket binds the interface address; in this namespace it sits on lo.
      await inNs(ns, 'ip', ['addr', 'add', `${ADDR}/32`, 'dev', 'lo'])
      thread = await enterNetns(ns)
    })
    afterAll(async () => {
      thread?.leave()
      await namespaces.removeAll()
    })

    /** The namespace's links (the TUN while a datapath is open). */
    const links = async (): Promise<string[]> =>
      (await inNs(ns, 'ip', ['-o', 'link', 'show']))
        .split('\n')
        .filter((l) => l.trim() !== '')
        .map((l) => l.split(':')[1]!.trim().split('@')[0]!)
        .sort()

    describeBackendConformance(
      'udp',
      async () => {
        const host = new MemoryHostNetwork({ links: [{ name: device, mtu: 1500 }] })
        const networks: UdpNetwork[] = []
        const inner = udp({ host, device, datapath: 'batch' })
        // The same backend, with each activated network kept for reading its peer table.
        const factory = defineBackend('udp', async (ctx) => {
          const backend = await inner.create(ctx)
          return {
            type: backend.type,
            prepare: async (config, opts) => {
              const prepared = await backend.prepare!(config, opts)
              const kept: PreparedNetwork = {
                attrs: prepared.attrs,
                abort: () => prepared.abort(),
                activate: async (lease, activateOpts): Promise<Network> => {
                  const network = await prepared.activate(lease, activateOpts)
                  networks.push(network as UdpNetwork)
                  return network
                },
              }
              return kept
            },
          }
        })
        return {
          factory,
          config: parseNetworkConfig({ Network: '10.244.0.0/16', Backend: { Type: 'udp' } }),
          extIface: { name: 'lo', index: 1, mtu: 1500, ifaceAddr: ADDR, extAddr: ADDR },
          ownSubnet: '10.244.1.0/24',
          peerAttrs: (publicIP) => ({ publicIP, backendType: 'udp' }),
          entriesFor: async (subnet) =>
            (networks.at(-1)?.peers() ?? [])
              .filter((p) => p.subnet === subnet)
              .map((p) => `peer ${p.subnet} ${p.publicIP}:${p.port}`)
              .sort(),
          plantStale: async () => {
            throw new Error('not applicable: the peer table starts empty with each datapath')
          },
          created: links,
          leftovers: async () =>
            host.subscriberCount + (await links()).filter((l) => l === device).length,
          close: async () => {
            for (const n of networks.splice(0)) await n.close()
            await host.close()
          },
        }
      },
      {
        notApplicable: {
          'clears stale owned entries on the first batch and adopts the peers in it':
            'no stale entry can exist: the peer table is created empty with the TUN at activate and goes with it',
        },
      },
    )
  },
)
