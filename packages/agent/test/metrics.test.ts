import { describe, expect, it } from 'vitest'
import { ConfigNotFoundError, RegistryUnavailableError } from '@flannel/core'
import type { UdpCounters } from '@flannel/backend-udp'
import { AgentMetrics } from '../src/metrics.js'

const zero: UdpCounters = {
  txPackets: 0,
  txBytes: 0,
  rxPackets: 0,
  rxBytes: 0,
  dropUnknownPeer: 0,
  dropSpoofedSource: 0,
  dropTtl: 0,
  dropMalformed: 0,
  dropTruncated: 0,
  dropNoRoute: 0,
  icmpUnreachableSent: 0,
} as UdpCounters

describe('AgentMetrics udp drop counters', () => {
  it('mirrors the datapath totals by reason at every scrape', async () => {
    const metrics = new AgentMetrics()
    let counters: UdpCounters = { ...zero, dropUnknownPeer: 2, dropTtl: 1 }
    metrics.watchNetwork({ counters: () => counters })
    let text = await metrics.registry.metrics()
    expect(text).toContain('flannel_udp_dropped_packets_total{reason="unknown_peer"} 2')
    expect(text).toContain('flannel_udp_dropped_packets_total{reason="ttl"} 1')
    expect(text).toContain('flannel_udp_dropped_packets_total{reason="spoofed_source"} 0')
    counters = { ...counters, dropUnknownPeer: 5 }
    text = await metrics.registry.metrics()
    expect(text).toContain('flannel_udp_dropped_packets_total{reason="unknown_peer"} 5')
  })

  it('keeps the last totals when the datapath is gone', async () => {
    const metrics = new AgentMetrics()
    let gone = false
    metrics.watchNetwork({
      counters: () => {
        if (gone) throw new Error('stopped')
        return { ...zero, dropSpoofedSource: 3 }
      },
    })
    await metrics.registry.metrics()
    gone = true
    expect(await metrics.registry.metrics()).toContain(
      'flannel_udp_dropped_packets_total{reason="spoofed_source"} 3',
    )
  })

  it('exports no udp series for networks without counters', async () => {
    const metrics = new AgentMetrics()
    metrics.watchNetwork({ mtu: 1450 })
    const text = await metrics.registry.metrics()
    expect(text).toContain('# TYPE flannel_udp_dropped_packets_total counter')
    expect(text).not.toContain('flannel_udp_dropped_packets_total{')
  })
})

describe('AgentMetrics registry errors', () => {
  it('counts config reads that failed because the registry was unreachable, not a missing config', async () => {
    const metrics = new AgentMetrics()
    metrics.observe({
      type: 'config-failed',
      error: new RegistryUnavailableError('etcd: no endpoint answered'),
      retryInMs: 1000,
    })
    metrics.observe({
      type: 'config-failed',
      error: new ConfigNotFoundError('no config'),
      retryInMs: 1000,
    })
    expect(await metrics.registry.metrics()).toContain('flannel_registry_errors_total 1')
  })
})
