import { describe, expect, it } from 'vitest'
import { Ip4Net } from '@flannel/core'
import { routeName } from '@flannel/backend-gce'
import { resourcePath, staleRoutes } from '../src/plan.js'

const net = 'https://www.googleapis.com/compute/v1/projects/p/global/networks/n'

describe('routeName', () => {
  it("is flanneld's name", () => {
    expect(routeName(Ip4Net.parse('10.20.5.0/24'))).toBe('flannel-10-20-5-0-24')
  })
})

describe('staleRoutes', () => {
  const hop = 'projects/p/zones/z/instances/i'
  const routes = [
    { name: 'flannel-10-5-1-0-24', destRange: '10.5.1.0/24', network: net, nextHopInstance: hop },
    { name: 'flannel-10-5-2-0-24', destRange: '10.5.2.0/24', network: net, nextHopInstance: hop },
    { name: 'flannel-10-5-3-0-24', destRange: '10.5.4.0/24', network: net, nextHopInstance: hop }, // name does not match
    { name: 'flannel-10-0-0-0-8', destRange: '10.0.0.0/8', network: net, nextHopInstance: hop }, // supernet
    { name: 'flannel-10-5-5-0-24', destRange: '10.5.5.0/24', network: net, nextHopInstance: null }, // no instance hop
    {
      name: 'flannel-10-5-6-0-24',
      destRange: '10.5.6.0/24',
      network: 'projects/p/global/networks/m',
      nextHopInstance: hop,
    },
  ]
  it('selects only flannel-named instance routes of this network inside Network without a live lease', () => {
    const live = new Set(['10.5.1.0/24'])
    expect(staleRoutes(routes, Ip4Net.parse('10.5.0.0/16'), net, live).map((r) => r.name)).toEqual([
      'flannel-10-5-2-0-24',
    ])
    expect(
      staleRoutes(
        routes,
        Ip4Net.parse('10.5.0.0/16'),
        net,
        new Set(),
        new Set(['10.5.1.0/24']),
      ).map((r) => r.name),
    ).toEqual(['flannel-10-5-1-0-24'])
  })
  it('compares links without their API prefix', () => {
    expect(
      resourcePath('https://compute.googleapis.com/compute/v1/projects/p/zones/z/instances/i'),
    ).toBe(hop)
    expect(resourcePath(`https://www.googleapis.com/compute/v1/${hop}`)).toBe(hop)
  })
})
