import { describe, expect, it } from 'vitest'
import { isFlannelError, parseNetworkConfig } from '@flannel/core'
import { backoffDelay, decodeBackendData, encodeBackendData } from '@flannel/core/registry'

describe('parseNetworkConfig with check: false (flanneld kube mode)', () => {
  it('takes the stock net-conf.json without deriving allocation fields', () => {
    const c = parseNetworkConfig(
      '{"Network": "10.244.0.0/16", "EnableNFTables": false, "Backend": {"Type": "vxlan"}}',
      { check: false },
    )
    expect(c.network?.toString()).toBe('10.244.0.0/16')
    expect(c.backendType).toBe('vxlan')
    expect(c.subnetLen).toBe(0)
    expect(c.subnetMin).toBeUndefined()
  })

  it('accepts what etcd mode refuses: a /30 network, SubnetMin outside, a missing Network', () => {
    expect(() => parseNetworkConfig('{"Network":"10.1.0.0/30"}')).toThrow(/too small/)
    expect(
      parseNetworkConfig('{"Network":"10.1.0.0/30"}', { check: false }).network?.toString(),
    ).toBe('10.1.0.0/30')
    expect(
      parseNetworkConfig('{"Network":"10.1.0.0/16","SubnetMin":"10.9.0.0"}', { check: false })
        .network,
    ).toBeDefined()
    expect(parseNetworkConfig('{}', { check: false }).network).toBeUndefined()
  })

  it('still fails on decoding errors and on no stack at all', () => {
    expect(() => parseNetworkConfig('{"SubnetLen":"x"}', { check: false })).toThrow()
    let err: unknown
    try {
      parseNetworkConfig('{"EnableIPv4":false}', { check: false })
    } catch (e) {
      err = e
    }
    expect(isFlannelError(err, 'CONFIG_INVALID')).toBe(true)
    expect((err as Error).message).toBe('none defined stack')
  })
})

describe('encodeBackendData / decodeBackendData', () => {
  it('writes compact Go JSON, null when absent, and reads it back', () => {
    const data = { VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' }
    expect(encodeBackendData(data)).toBe('{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}')
    expect(encodeBackendData(undefined)).toBe('null')
    expect(encodeBackendData('<&>')).toBe('"\\u003c\\u0026\\u003e"')
    expect(decodeBackendData('{"VNI":1, "VtepMAC":"0a:58:0a:f4:01:00"}')).toEqual(data)
    expect(decodeBackendData('null')).toBeUndefined()
    expect(decodeBackendData('')).toBeUndefined()
    expect(decodeBackendData(undefined)).toBeUndefined()
    expect(decodeBackendData('{not json')).toBeUndefined()
  })
})

describe('backoffDelay', () => {
  it('doubles from initial to max with equal jitter', () => {
    expect(backoffDelay(0, () => 0, 100, 5000)).toBe(50)
    expect(backoffDelay(0, () => 1, 100, 5000)).toBe(100)
    expect(backoffDelay(3, () => 1, 100, 5000)).toBe(800)
    expect(backoffDelay(40, () => 0, 100, 5000)).toBe(2500)
  })
})
