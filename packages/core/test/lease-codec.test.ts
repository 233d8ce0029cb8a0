import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { InvalidArgumentError, type LeaseAttrs } from '@flannel/core'
import { decodeLeaseAttrs, encodeLeaseAttrs } from '@flannel/core/registry'

// Values written by flanneld, byte for byte (core.md section 3, interop.md section 3).
const GOLDEN: [string, LeaseAttrs, string][] = [
  [
    'vxlan, IPv4',
    {
      publicIP: '192.168.64.3',
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
    },
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
  ],
  [
    'vxlan, dual-stack',
    {
      publicIP: '192.168.64.3',
      publicIPv6: 'fd00::3',
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
      backendV6Data: { VNI: 1, VtepMAC: '9e:11:04:aa:01:02' },
    },
    '{"PublicIP":"192.168.64.3","PublicIPv6":"fd00::3","BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"},"BackendV6Data":{"VNI":1,"VtepMAC":"9e:11:04:aa:01:02"}}',
  ],
  [
    'host-gw',
    { publicIP: '192.168.64.3', backendType: 'host-gw' },
    '{"PublicIP":"192.168.64.3","PublicIPv6":null,"BackendType":"host-gw"}',
  ],
  [
    'udp / alloc / cloud',
    { publicIP: '192.168.64.3' },
    '{"PublicIP":"192.168.64.3","PublicIPv6":null}',
  ],
  [
    'vxlan on flanneld v0.20.2',
    {
      publicIP: '192.0.2.11',
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: '8e:8d:d4:cc:b1:6d' },
    },
    '{"PublicIP":"192.0.2.11","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"8e:8d:d4:cc:b1:6d"}}',
  ],
]

describe('encodeLeaseAttrs', () => {
  it.each(GOLDEN)('writes flanneld bytes: %s', (_name, attrs, bytes) => {
    expect(encodeLeaseAttrs(attrs)).toBe(bytes)
  })

  it('omits an empty BackendType and writes PublicIPv6 in canonical form', () => {
    expect(
      encodeLeaseAttrs({
        publicIP: '192.0.2.1',
        publicIPv6: 'FD00:0:0:0:0:0:0:3',
        backendType: '',
      }),
    ).toBe('{"PublicIP":"192.0.2.1","PublicIPv6":"fd00::3"}')
    expect(encodeLeaseAttrs({ publicIP: '0.0.0.0', publicIPv6: '' })).toBe(
      '{"PublicIP":"0.0.0.0","PublicIPv6":null}',
    )
  })

  it('compacts backend data and escapes HTML characters like Go', () => {
    expect(encodeLeaseAttrs({ publicIP: '192.0.2.1', backendData: { a: '<&>', b: [1, 2] } })).toBe(
      '{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendData":{"a":"\\u003c\\u0026\\u003e","b":[1,2]}}',
    )
  })

  it.each([
    [{ publicIP: '' }, 'publicIP'],
    [{ publicIP: '192.0.2.256' }, 'publicIP'],
    [{ publicIP: '192.0.2.1', publicIPv6: '192.0.2.1' }, 'publicIPv6'],
  ])('rejects bad addresses: %j', (attrs, field) => {
    expect(() => encodeLeaseAttrs(attrs)).toThrow(InvalidArgumentError)
    try {
      encodeLeaseAttrs(attrs)
    } catch (err) {
      expect((err as InvalidArgumentError).field).toBe(field)
    }
  })
})

describe('decodeLeaseAttrs', () => {
  it.each(GOLDEN)('round-trips flanneld bytes: %s', (_name, attrs, bytes) => {
    expect(decodeLeaseAttrs(bytes)).toEqual(attrs)
    expect(encodeLeaseAttrs(decodeLeaseAttrs(bytes))).toBe(bytes)
  })

  it('reads values of releases before dual-stack (no PublicIPv6 key)', () => {
    expect(
      decodeLeaseAttrs(
        '{"PublicIP":"10.0.0.5","BackendType":"vxlan","BackendData":{"VtepMAC":"aa:bb:cc:dd:ee:ff"}}',
      ),
    ).toEqual({
      publicIP: '10.0.0.5',
      backendType: 'vxlan',
      backendData: { VtepMAC: 'aa:bb:cc:dd:ee:ff' },
    })
  })

  it('matches keys case-insensitively, ignores unknown keys and tolerates whitespace', () => {
    expect(
      decodeLeaseAttrs(
        ' { "publicip" : "10.0.0.5", "PUBLICIPV6": "FD00::0:3", "backendtype":"host-gw", "Other": [1] } ',
      ),
    ).toEqual({ publicIP: '10.0.0.5', publicIPv6: 'fd00::3', backendType: 'host-gw' })
  })

  it('reads a missing PublicIP as 0.0.0.0, like flanneld', () => {
    expect(decodeLeaseAttrs('{"BackendType":"host-gw"}')).toEqual({
      publicIP: '0.0.0.0',
      backendType: 'host-gw',
    })
  })

  it.each([
    ['', 'lease value'],
    ['garbage', 'lease value'],
    ['{"PublicIP":"10.0.0.5"', 'lease value'],
    ['[1,2]', 'lease value'],
    ['"10.0.0.5"', 'lease value'],
    ['null', 'lease value'],
    ['{"PublicIP":""}', 'PublicIP'],
    ['{"PublicIP":"10.0.0"}', 'PublicIP'],
    ['{"PublicIP":12}', 'PublicIP'],
    ['{"PublicIP":"10.0.0.5","PublicIPv6":"fd00::g"}', 'PublicIPv6'],
    ['{"PublicIP":"10.0.0.5","BackendType":7}', 'BackendType'],
  ])('throws a typed error on %j', (json, field) => {
    let caught: unknown
    try {
      decodeLeaseAttrs(json)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError)
    expect((caught as InvalidArgumentError).field).toBe(field)
  })
})

describe('lease codec properties', () => {
  const octet = fc.integer({ min: 0, max: 255 })
  const ip4 = fc.tuple(octet, octet, octet, octet).map((o) => o.join('.'))
  const attrs = fc.record(
    {
      publicIP: ip4,
      publicIPv6: fc.ipV6(),
      backendType: fc.constantFrom('vxlan', 'host-gw', 'x<&>'),
      backendData: fc.jsonValue(),
      backendV6Data: fc.jsonValue(),
    },
    { requiredKeys: ['publicIP'] },
  )

  it('decode(encode(attrs)) gives the attrs back, and encoding is stable', () => {
    fc.assert(
      fc.property(attrs, (a) => {
        const bytes = encodeLeaseAttrs(a)
        const back = decodeLeaseAttrs(bytes)
        expect(back.publicIP).toBe(a.publicIP)
        expect(back.backendType).toBe(a.backendType)
        expect(back.backendData).toEqual(
          a.backendData === undefined ? undefined : JSON.parse(JSON.stringify(a.backendData)),
        )
        expect(encodeLeaseAttrs(back)).toBe(bytes)
        expect(bytes.startsWith(`{"PublicIP":"${a.publicIP}","PublicIPv6":`)).toBe(true)
      }),
      { numRuns: 300 },
    )
  })
})

it('keeps a "__proto__" key in backend data as plain data', () => {
  const attrs = decodeLeaseAttrs('{"PublicIP":"10.0.0.5","BackendData":{"__proto__":{"x":1}}}')
  expect(Object.getPrototypeOf(attrs.backendData)).toBe(Object.prototype)
  expect(Object.keys(attrs.backendData as object)).toEqual(['__proto__'])
  expect(encodeLeaseAttrs(attrs)).toBe(
    '{"PublicIP":"10.0.0.5","PublicIPv6":null,"BackendData":{"__proto__":{"x":1}}}',
  )
})

describe('deeply nested backend data', () => {
  it('decodes and re-encodes BackendData nested 10000 levels deep, refuses 10001', () => {
    // lease object (1) + BackendData arrays (9999) = 10000
    const data = `${'['.repeat(9999)}${']'.repeat(9999)}`
    const bytes = `{"PublicIP":"192.0.2.1","PublicIPv6":null,"BackendData":${data}}`
    const attrs = decodeLeaseAttrs(bytes)
    expect(encodeLeaseAttrs(attrs)).toBe(bytes)
    expect(() => decodeLeaseAttrs(bytes.replace(data, `[${data}]`))).toThrow(
      /invalid character '\[' exceeded max depth/,
    )
  })
})
