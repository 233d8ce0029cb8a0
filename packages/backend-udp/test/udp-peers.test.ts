/**
 * The udp network's peer table under hostile lease events (issue 12), fed
 * as the Agent feeds it (through withoutOwnLease), with a recording stand-in
 * for the native datapath: pure logic, no TUN.
 */
import {
  Ip4Net,
  parseIp4,
  parseNetworkConfig,
  silentLogger,
  withoutOwnLease,
  type Lease,
  type LeaseEvent,
  type NetworkEvent,
} from '@flannel/core'
import { Subject } from 'rxjs'
import { describe, expect, it } from 'vitest'
import { UdpNetwork, type UdpDatapath } from '../src/index.js'

function lease(subnet: string | Ip4Net, publicIP: string): Lease {
  return {
    subnet: typeof subnet === 'string' ? Ip4Net.parse(subnet) : subnet,
    attrs: { publicIP },
    expiration: new Date(Date.now() + 86_400_000),
  }
}

/** The peer table as the native loop would hold it. */
function recordingDatapath(): { datapath: UdpDatapath; table: Map<string, string> } {
  const table = new Map<string, string>()
  const datapath = {
    device: 'flannel0',
    mode: 'single',
    start: () => undefined,
    close: () => undefined,
    counters: () => ({ peers: table.size }),
    setPeer: (subnet: Ip4Net, publicIP: string) => void table.set(subnet.toString(), publicIP),
    deletePeer: (subnet: Ip4Net) => table.delete(subnet.toString()),
  }
  return { datapath: datapath as unknown as UdpDatapath, table }
}

describe('UdpNetwork peer table', () => {
  it("never lets a key with host bits, a lease overlapping the own subnet or a peer's, or one outside the network change it", async () => {
    const { datapath, table } = recordingDatapath()
    const own = lease('10.5.1.0/24', '192.0.2.1')
    const network = new UdpNetwork({ lease: own, mtu: 1472, datapath, logger: silentLogger })
    const config = parseNetworkConfig({ Network: '10.5.0.0/16' })
    const events$ = new Subject<LeaseEvent[]>()
    const seen: NetworkEvent[] = []
    const peers = events$.pipe(
      withoutOwnLease(own, {
        config,
        onIgnored: (l, reason) => seen.push({ type: 'ignored', lease: l, reason }),
      }),
    )
    const sub = network.run(peers).subscribe((e) => seen.push(e))
    events$.next([{ type: 'added', lease: lease('10.5.85.0/24', '192.0.2.2') }])
    const before = [...table]
    const hostile = [
      lease(new Ip4Net(parseIp4('10.5.85.5'), 24), '192.0.2.66'),
      lease(new Ip4Net(parseIp4('10.5.1.5'), 24), '192.0.2.66'),
      lease('10.5.85.128/25', '192.0.2.66'),
      lease('10.5.1.0/25', '192.0.2.66'),
      lease('10.5.0.0/16', '192.0.2.66'),
      lease('192.0.2.0/24', '192.0.2.66'),
    ]
    events$.next(hostile.map((l): LeaseEvent => ({ type: 'added', lease: l })))
    events$.next(hostile.map((l): LeaseEvent => ({ type: 'removed', lease: l })))
    expect([...table]).toEqual(before)
    expect(before).toEqual([['10.5.85.0/24', '192.0.2.2']])
    expect(seen.filter((e) => e.type === 'applied')).toHaveLength(1)
    expect(seen.filter((e) => e.type === 'ignored').length).toBeGreaterThanOrEqual(hostile.length)
    sub.unsubscribe()
  })
})
