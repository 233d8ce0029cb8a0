import { describe, expect, it } from 'vitest'
import { Ip4Net } from '@flannel/core'
import { planRoutes } from '../src/plan.js'

const target = { routeTableId: 'vtb-1', instanceId: 'i-me', subnet: Ip4Net.parse('10.5.34.0/24') }
const entry = (cidr: string, instance: string, extra: Record<string, string> = {}) => ({
  RouteTableId: 'vtb-1',
  DestinationCidrBlock: cidr,
  Type: 'Custom',
  InstanceId: instance,
  NextHopId: instance,
  Status: 'Available',
  ...extra,
})

describe('planRoutes (flanneld recreateRoute rules)', () => {
  it('creates when the table has no entry for the lease', () => {
    expect(planRoutes([entry('10.5.7.0/24', 'i-other')], target)).toEqual({
      remove: [],
      exists: false,
      customCount: 1,
    })
  })

  it('keeps the right entry in any status', () => {
    expect(planRoutes([entry('10.5.34.0/24', 'i-me', { Status: 'Pending' })], target).exists).toBe(
      true,
    )
  })

  it('deletes only this instance’s other entries, keeping 0.0.0.0/0, foreign and system entries', () => {
    const stale = entry('10.5.9.0/24', 'i-me')
    const plan = planRoutes(
      [
        stale,
        entry('0.0.0.0/0', 'i-me'),
        entry('10.5.7.0/24', 'i-other'),
        entry('10.6.0.0/24', 'i-me', { RouteTableId: 'vtb-2' }),
        entry('192.168.0.0/16', '', { Type: 'System' }),
        entry('10.5.34.0/24', 'i-me'),
      ],
      target,
    )
    expect(plan.remove).toEqual([stale])
    expect(plan.exists).toBe(true)
    expect(plan.customCount).toBe(5)
  })

  it('treats an entry for the same subnet with another prefix as stale', () => {
    expect(planRoutes([entry('10.5.34.0/25', 'i-me')], target).remove).toHaveLength(1)
  })
})
