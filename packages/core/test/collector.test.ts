import { Subject } from 'rxjs'
import { describe, expect, it } from 'vitest'
import {
  Ip4Net,
  Ip6Net,
  parseIp4,
  runStaleRouteCollector,
  type Lease,
  type LeaseEvent,
  type NetworkEvent,
} from '@flannel/core'

const lease = (subnet: string | Ip4Net, ipv6Subnet?: string): Lease => ({
  subnet: typeof subnet === 'string' ? Ip4Net.parse(subnet) : subnet,
  ...(ipv6Subnet ? { ipv6Subnet: Ip6Net.parse(ipv6Subnet) } : {}),
  attrs: { publicIP: '192.0.2.1' },
  expiration: new Date(Date.now() + 86_400_000),
})
async function until(cond: () => boolean): Promise<void> {
  for (let i = 0; i < 500 && !cond(); i++) await tick(5)
  expect(cond()).toBe(true)
}
const tick = (ms = 0) => new Promise((r) => setTimeout(r, ms))

// The scheduling logic alone, with a recording collection step.
function harness(delayMs: number, enabled = true) {
  const runs: { live: string[]; only: string[] | undefined }[] = []
  let closed = 0
  let aborted = false
  const events = new Subject<LeaseEvent[]>()
  const seen: NetworkEvent[] = []
  const sub = runStaleRouteCollector(events, {
    own: lease('10.5.34.0/24'),
    ignoredReason: 'test',
    enabled,
    delayMs,
    start: () => ({
      close: () => {
        closed += 1
      },
      collect: async (live, only, signal) => {
        runs.push({ live: [...live].sort(), only: only && [...only].sort() })
        signal.addEventListener('abort', () => (aborted = true))
        await tick(5)
      },
    }),
  }).subscribe((e) => seen.push(e))
  return { runs, events, seen, sub, closed: () => closed, aborted: () => aborted }
}

describe('runStaleRouteCollector', () => {
  it('collects everything after the first batch, then only removed subnets, merging changes made during the delay', async () => {
    const h = harness(30)
    h.events.next([{ type: 'added', lease: lease('10.5.1.0/24') }])
    h.events.next([{ type: 'added', lease: lease('10.5.2.0/24') }])
    await tick(60)
    expect(h.runs).toEqual([
      { live: ['10.5.1.0/24', '10.5.2.0/24', '10.5.34.0/24'], only: undefined },
    ])
    h.events.next([{ type: 'removed', lease: lease('10.5.1.0/24') }])
    h.events.next([{ type: 'removed', lease: lease('10.5.2.0/24') }])
    h.events.next([{ type: 'added', lease: lease('10.5.2.0/24') }]) // re-acquired meanwhile
    await tick(60)
    expect(h.runs[1]).toEqual({ live: ['10.5.2.0/24', '10.5.34.0/24'], only: ['10.5.1.0/24'] })
    expect(h.seen.filter((e) => e.type === 'ignored')).toHaveLength(3)
    h.sub.unsubscribe()
    expect(h.closed()).toBe(1)
  })

  it('keeps a subnet live while any lease holds it, ignores host-bit leases, never collects for one overlapping its own', async () => {
    const h = harness(0)
    h.events.next([
      { type: 'added', lease: lease('10.5.1.0/24') },
      { type: 'added', lease: lease('10.5.2.0/24') },
      { type: 'added', lease: lease('10.5.1.0/24', 'fd00::/64') }, // a second key, same subnet
      { type: 'added', lease: lease(new Ip4Net(parseIp4('10.5.1.9'), 24)) },
      { type: 'added', lease: lease('10.5.34.0/25') }, // inside our own 10.5.34.0/24
    ])
    await until(() => h.runs.length === 1)
    h.events.next([{ type: 'removed', lease: lease('10.5.1.0/24', 'fd00::/64') }])
    h.events.next([{ type: 'removed', lease: lease(new Ip4Net(parseIp4('10.5.1.9'), 24)) }])
    h.events.next([{ type: 'removed', lease: lease('10.5.34.0/25') }])
    h.events.next([{ type: 'removed', lease: lease('10.5.2.0/24') }])
    await until(() => h.runs.length === 2)
    expect(h.runs[1]).toEqual({ live: ['10.5.1.0/24', '10.5.34.0/24'], only: ['10.5.2.0/24'] })
    h.sub.unsubscribe()
  })

  it('never treats its own lease as removed and does nothing when disabled', async () => {
    const h = harness(0, false)
    h.events.next([{ type: 'removed', lease: lease('10.5.34.0/24') }])
    await tick(20)
    expect(h.runs).toEqual([])
    h.sub.unsubscribe()
  })

  it('clears its timer and aborts a running collection on unsubscribe', async () => {
    const pending = harness(10_000)
    pending.events.next([])
    pending.sub.unsubscribe()
    await tick(20)
    expect(pending.runs).toEqual([])

    const running = harness(0)
    running.events.next([])
    await tick(1)
    running.sub.unsubscribe()
    expect(running.aborted()).toBe(true)
  })
})
