/**
 * The vxlan backend on real kernel devices in a network namespace of its own:
 * device MTUs as the backend computes them, and an MTU changed by hand
 * (`ip link set flannel.1 mtu 1000`) set back through the link notification.
 */
import {
  Ip4Net,
  Ip6Net,
  parseNetworkConfig,
  type Lease,
  type LeaseEvent,
  type NetworkEvent,
  type SubnetRegistry,
} from '@flannel/core'
import { NEVER, Subject, filter, firstValueFrom, timeout, type Subscription } from 'rxjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  Namespaces,
  RemoteHostNetwork,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
} from '../../linux/test/helpers/netns.js'
import { VxlanBackend } from '../src/index.js'

const unavailable = await kernelTestsUnavailable()
if (unavailable) console.warn(`vxlan namespace tests skipped: ${unavailable}`)

const config = parseNetworkConfig({
  Network: '10.244.0.0/16',
  EnableIPv6: true,
  IPv6Network: 'fd00:10::/56',
  Backend: { Type: 'vxlan' },
})

/** Hands out 10.244.1.0/24 + fd00:10:0:1::/64 and nothing else. */
const registry: SubnetRegistry = {
  getNetworkConfig: async () => config,
  acquireLease: async (attrs): Promise<Lease> => ({
    subnet: Ip4Net.parse('10.244.1.0/24'),
    ipv6Subnet: Ip6Net.parse('fd00:10:0:1::/64'),
    attrs,
    expiration: new Date(Date.now() + 86_400_000),
  }),
  renewLease: async (lease) => lease,
  releaseLease: async () => {},
  watchLeases: () => NEVER,
  close: async () => {},
}

/** `ip -o link show <dev>` -> its MTU. */
async function mtuOf(ns: string, dev: string): Promise<number> {
  const line = await inNs(ns, 'ip', ['-o', 'link', 'show', dev])
  return Number(/ mtu (\d+) /.exec(line)?.[1])
}

describe.skipIf(unavailable !== undefined)(
  `vxlan device MTU in a namespace${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const ns = `${prefix}-vx`
    const leases = new Subject<LeaseEvent[]>()
    const events = new Subject<NetworkEvent>()
    const seen: NetworkEvent[] = []
    let host: RemoteHostNetwork | undefined
    let run: Subscription | undefined
    let reportedMtu = 0

    beforeAll(async () => {
      await namespaces.create(ns)
      // The underlay: a veth pair inside the namespace, MTU 1500.
      await inNs(ns, 'ip', ['link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', `${prefix}p`])
      await inNs(ns, 'ip', ['addr', 'add', '192.0.2.1/24', 'dev', 'eth0'])
      await inNs(ns, 'ip', ['addr', 'add', '2001:db8::1/64', 'dev', 'eth0', 'nodad'])
      await inNs(ns, 'ip', ['link', 'set', 'eth0', 'up'])
      await inNs(ns, 'ip', ['link', 'set', `${prefix}p`, 'up'])
      host = new RemoteHostNetwork(ns)
      await host.start()
      const eth = (await host.getLink('eth0'))!
      const backend = new VxlanBackend(
        {
          registry,
          extIface: {
            name: 'eth0',
            index: eth.index,
            mtu: eth.mtu,
            ifaceAddr: '192.0.2.1',
            extAddr: '192.0.2.1',
            ifaceV6Addr: '2001:db8::1',
            extV6Addr: '2001:db8::1',
          },
        },
        // No periodic check within the test: a repair here comes from the link notification.
        // accept_ra would be written through this process's /proc/sys, not the namespace's.
        { host, procSys: false, checkIntervalMs: 600_000 },
      )
      const network = await backend.registerNetwork(config)
      reportedMtu = network.mtu
      run = network.run(leases).subscribe((e) => {
        seen.push(e)
        events.next(e)
      })
      // The first batch (no peers) ends the start-up; the loop then watches the devices.
      leases.next([])
    })

    afterAll(async () => {
      run?.unsubscribe()
      await host?.close()
      await namespaces.removeAll()
    })

    const repaired = (): Promise<NetworkEvent> =>
      firstValueFrom(
        events.pipe(
          filter((e) => e.type === 'repaired'),
          timeout(10_000),
        ),
      )

    it('gives flannel.1 the external MTU less 50 and flannel-v6.1 less 70, the most the kernel allows over IPv6', async () => {
      expect(reportedMtu).toBe(1450)
      expect(await mtuOf(ns, 'flannel.1')).toBe(1450)
      expect(await mtuOf(ns, 'flannel-v6.1')).toBe(1430)
    })

    it('sets flannel.1 back to 1450 after `ip link set flannel.1 mtu 1000`', async () => {
      const next = repaired()
      await inNs(ns, 'ip', ['link', 'set', 'flannel.1', 'mtu', '1000'])
      expect(await next).toEqual({
        type: 'repaired',
        what: 'mtu',
        detail: 'flannel.1: 1000 -> 1450',
      })
      expect(await mtuOf(ns, 'flannel.1')).toBe(1450)
      expect(await inNs(ns, 'ip', ['-4', '-o', 'addr', 'show', 'dev', 'flannel.1'])).toContain(
        'inet 10.244.1.0/32',
      )
    })

    it('sets flannel-v6.1 back to 1430 after `ip link set flannel-v6.1 mtu 1000`, and its address', async () => {
      // Below 1280 the kernel switches IPv6 off on the device: its addresses go too.
      const next = repaired()
      const address = firstValueFrom(
        events.pipe(
          filter((e) => e.type === 'repaired' && e.what === 'address'),
          timeout(10_000),
        ),
      )
      await inNs(ns, 'ip', ['link', 'set', 'flannel-v6.1', 'mtu', '1000'])
      expect(await next).toEqual({
        type: 'repaired',
        what: 'mtu',
        detail: 'flannel-v6.1: 1000 -> 1430',
      })
      expect(await address).toEqual({
        type: 'repaired',
        what: 'address',
        detail: 'fd00:10:0:1::/128 on flannel-v6.1',
      })
      expect(await mtuOf(ns, 'flannel-v6.1')).toBe(1430)
      expect(await inNs(ns, 'ip', ['-6', '-o', 'addr', 'show', 'dev', 'flannel-v6.1'])).toContain(
        'inet6 fd00:10:0:1::/128',
      )
    })

    it('brings flannel-v6.1 back up, at 1430 and with its address, after `ip link set flannel-v6.1 down mtu 1000`', async () => {
      const seenFrom = seen.length
      const device = firstValueFrom(
        events.pipe(
          filter((e) => e.type === 'repaired' && e.what === 'device'),
          timeout(10_000),
        ),
      )
      await inNs(ns, 'ip', ['link', 'set', 'flannel-v6.1', 'down', 'mtu', '1000'])
      await device
      expect(seen.slice(seenFrom).filter((e) => e.type === 'repaired')).toEqual([
        { type: 'repaired', what: 'mtu', detail: 'flannel-v6.1: 1000 -> 1430' },
        { type: 'repaired', what: 'device', detail: 'flannel-v6.1' },
      ])
      const line = await inNs(ns, 'ip', ['-o', 'link', 'show', 'flannel-v6.1'])
      expect(line).toMatch(/<[^>]*\bUP\b/)
      expect(await mtuOf(ns, 'flannel-v6.1')).toBe(1430)
      expect(await inNs(ns, 'ip', ['-6', '-o', 'addr', 'show', 'dev', 'flannel-v6.1'])).toContain(
        'inet6 fd00:10:0:1::/128',
      )
    })

    it('warned about nothing', () => {
      expect(seen.filter((e) => e.type === 'warning' || e.type === 'failed')).toEqual([])
    })
  },
)
