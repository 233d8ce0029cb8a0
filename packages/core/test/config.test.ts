import { describe, expect, it } from 'vitest'
import fc from 'fast-check'
import { ConfigError, isFlannelError, parseNetworkConfig } from '@flannel/core'

/** Parses and returns the effective IPv4 numbers, or the error text. */
function effective4(json: string): string {
  try {
    const c = parseNetworkConfig(json)
    return `${c.subnetLen} ${c.subnetMin?.address} ${c.subnetMax?.address}`
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return `error: ${err.message}`
  }
}

function effective6(json: string): string {
  try {
    const c = parseNetworkConfig(json)
    return `${c.ipv6SubnetLen} ${c.ipv6SubnetMin?.address} ${c.ipv6SubnetMax?.address}`
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return `error: ${err.message}`
  }
}

function errorOf(input: string | object): ConfigError {
  try {
    parseNetworkConfig(input)
  } catch (err) {
    expect(isFlannelError(err, 'CONFIG_INVALID')).toBe(true)
    return err as ConfigError
  }
  throw new Error(`expected ${JSON.stringify(input)} to be rejected`)
}

describe('parseNetworkConfig: interop config matrix (interop.md 2.1, core.md 2.3)', () => {
  it.each([
    // network sizes
    ['{"Network":"10.0.0.0/8"}', '24 10.0.1.0 10.255.255.0'],
    ['{"Network":"10.3.0.0/16"}', '24 10.3.1.0 10.3.255.0'],
    ['{"Network":"10.1.0.0/22"}', '24 10.1.1.0 10.1.3.0'],
    ['{"Network":"10.1.0.0/23"}', '25 10.1.0.128 10.1.1.128'],
    ['{"Network":"10.1.0.0/24"}', '26 10.1.0.64 10.1.0.192'],
    ['{"Network":"10.1.0.0/28"}', '30 10.1.0.4 10.1.0.12'],
    [
      '{"Network":"10.1.0.0/29"}',
      'error: network is too small. Minimum useful network prefix is /28',
    ],
    // explicit SubnetLen
    [
      '{"Network":"10.3.0.0/16","SubnetLen":17}',
      'error: network must be able to accommodate at least four subnets',
    ],
    ['{"Network":"10.3.0.0/16","SubnetLen":18}', '18 10.3.64.0 10.3.192.0'],
    ['{"Network":"10.3.0.0/16","SubnetLen":30}', '30 10.3.0.4 10.3.255.252'],
    ['{"Network":"10.3.0.0/16","SubnetLen":31}', 'error: SubnetLen must be less than /31'],
    [
      '{"Network":"10.3.0.0/16","SubnetMin":"10.3.5.0","SubnetMax":"10.3.8.0","SubnetLen":28}',
      '28 10.3.5.0 10.3.8.0',
    ],
    // unaligned and out-of-range SubnetMin/Max
    [
      '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.5"}',
      'error: SubnetMin is not on a SubnetLen boundary: 10.3.1.5',
    ],
    [
      '{"Network":"10.3.0.0/16","SubnetMax":"10.3.200.1"}',
      'error: SubnetMax is not on a SubnetLen boundary: 10.3.200.1',
    ],
    [
      '{"Network":"10.3.0.0/16","SubnetMin":"10.4.1.0"}',
      'error: SubnetMin is not in the range of the Network',
    ],
    [
      '{"Network":"10.3.0.0/16","SubnetMax":"10.2.0.0"}',
      'error: SubnetMax is not in the range of the Network',
    ],
    // an inverted range is accepted (it only fails at allocation)
    [
      '{"Network":"10.3.0.0/16","SubnetMin":"10.3.9.0","SubnetMax":"10.3.2.0"}',
      '24 10.3.9.0 10.3.2.0',
    ],
    // SubnetMin 0.0.0.0 counts as not set
    ['{"Network":"10.3.0.0/16","SubnetMin":"0.0.0.0"}', '24 10.3.1.0 10.3.255.0'],
    // lower-case and camel-case keys; host bits masked
    ['{"network":"10.3.0.7/16","subnetlen":20}', '20 10.3.16.0 10.3.240.0'],
    ['{"nEtWoRk":"10.3.0.0/16","subnetMIN":"10.3.7.0"}', '24 10.3.7.0 10.3.255.0'],
    // missing or empty network
    ['{}', 'error: please define a correct Network parameter in the flannel config'],
    [
      '{"Network":"0.0.0.0/0"}',
      'error: please define a correct Network parameter in the flannel config',
    ],
    ['null', 'error: please define a correct Network parameter in the flannel config'],
  ])('%s -> %s', (json, expected) => {
    expect(effective4(json)).toBe(expected)
  })

  it.each([
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48"}',
      '64 fc00:0:0:1:: fc00:0:0:ffff::',
    ],
    [
      '{"enableIPv6":true,"enableIPv4":false,"ipv6Network":"fc00::/62"}',
      '64 fc00:0:0:1:: fc00:0:0:3::',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/63"}',
      '65 fc00::8000:0:0:0 fc00:0:0:1:8000::',
    ],
    ['{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/124"}', '126 fc00::4 fc00::c'],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/125"}',
      'error: IPv6Network is too small. Minimum useful network prefix is /124',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetLen":124,"IPv6SubnetMin":"fc00::10","IPv6SubnetMax":"fc00::100"}',
      '124 fc00::10 fc00::100',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetLen":127}',
      'error: SubnetLen must be less than /127',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetLen":49}',
      'error: network must be able to accommodate at least four subnets',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc01::"}',
      'error: IPv6SubnetMin is not in the range of the IPv6Network',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fd00::"}',
      'error: IPv6SubnetMax is not in the range of the IPv6Network',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMin":"fc00:0:0:1::1"}',
      'error: IPv6SubnetMin is not on a SubnetLen boundary: fc00:0:0:1::1',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fc00:0:0:2:8000::"}',
      'error: IPv6SubnetMax is not on a SubnetLen boundary: fc00:0:0:2:8000::',
    ],
    [
      '{"EnableIPv6":true,"EnableIPv4":false}',
      'error: please define a correct IPv6Network parameter in the flannel config',
    ],
    // a null pointer field is "not given"
    [
      '{"EnableIPv6":true,"EnableIPv4":false,"IPv6Network":"fc00::/48","IPv6SubnetMin":null}',
      '64 fc00:0:0:1:: fc00:0:0:ffff::',
    ],
  ])('%s -> %s', (json, expected) => {
    expect(effective6(json)).toBe(expected)
  })

  it('rejects a config with both families off', () => {
    const err = errorOf('{"EnableIPv4":false,"Network":"10.3.0.0/16"}')
    expect(err.message).toBe('none defined stack')
    expect(err.field).toBe('EnableIPv4')
  })

  it('applies both families in dual-stack mode', () => {
    const c = parseNetworkConfig(
      '{"Network":"10.5.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:10:244::/56"}',
    )
    expect(c.enableIPv4 && c.enableIPv6).toBe(true)
    expect(c.network?.toString()).toBe('10.5.0.0/16')
    expect(c.subnetMin?.toString()).toBe('10.5.1.0/24')
    expect(c.ipv6Network?.toString()).toBe('fd00:10:244::/56')
    expect(c.ipv6SubnetMin?.toString()).toBe('fd00:10:244:1::/64')
    expect(c.ipv6SubnetMax?.toString()).toBe('fd00:10:244:ff::/64')
  })

  it('leaves the IPv4 fields unset when IPv4 is off', () => {
    const c = parseNetworkConfig({ EnableIPv4: false, EnableIPv6: true, IPv6Network: 'fc00::/48' })
    expect(c.network).toBeUndefined()
    expect(c.subnetLen).toBe(0)
  })
})

describe('parseNetworkConfig: Backend', () => {
  it.each([
    ['{"Network":"10.3.0.0/16"}', 'udp'],
    ['{"Network":"10.3.0.0/16","Backend":{}}', ''],
    ['{"Network":"10.3.0.0/16","Backend":null}', ''],
    ['{"Network":"10.3.0.0/16","Backend":{"Type":"VXLAN"}}', 'vxlan'],
    ['{"Network":"10.3.0.0/16","backend":{"type":"Host-GW"}}', 'host-gw'],
    ['{"Network":"10.3.0.0/16","Backend":{"Type":null}}', ''],
  ])('%s -> type %j', (json, type) => {
    expect(parseNetworkConfig(json).backendType).toBe(type)
  })

  it('hands the Backend object over unchanged, keys as written', () => {
    const c = parseNetworkConfig(
      '{"Network":"10.3.0.0/16","Backend":{"Type":"vxlan","VNI":4096,"directRouting":true,"extra":{"a":[1]}}}',
    )
    expect(c.backend).toEqual({ Type: 'vxlan', VNI: 4096, directRouting: true, extra: { a: [1] } })
    expect(Object.isFrozen(c.backend)).toBe(true)
  })

  it.each([
    [
      '"vxlan"',
      'error decoding Backend property of config: json: cannot unmarshal string into Go value of type struct { Type string }',
    ],
    [
      '[]',
      'error decoding Backend property of config: json: cannot unmarshal array into Go value of type struct { Type string }',
    ],
    [
      '{"Type":1}',
      'error decoding Backend property of config: json: cannot unmarshal number into Go struct field .Type of type string',
    ],
  ])('Backend %s is rejected', (backend, message) => {
    const err = errorOf(`{"Network":"10.3.0.0/16","Backend":${backend}}`)
    expect(err.message).toBe(message)
    expect(err.field).toMatch(/^Backend/)
  })
})

describe('parseNetworkConfig: Go encoding/json decoding', () => {
  it('ignores unknown keys', () => {
    expect(
      parseNetworkConfig('{"Network":"10.3.0.0/16","Comment":"x","Nested":{"a":1}}').subnetLen,
    ).toBe(24)
  })

  it('lets the last of several spellings of a key win, in document order', () => {
    expect(
      parseNetworkConfig('{"network":"10.1.0.0/16","Network":"10.2.0.0/16"}').network?.toString(),
    ).toBe('10.2.0.0/16')
    expect(
      parseNetworkConfig(
        '{"Network":"10.1.0.0/16","network":"10.2.0.0/16","Network":"10.3.0.0/16"}',
      ).network?.toString(),
    ).toBe('10.3.0.0/16')
  })

  it('keeps EnableIPv4 on when it is null', () => {
    expect(parseNetworkConfig('{"Network":"10.3.0.0/16","EnableIPv4":null}').enableIPv4).toBe(true)
  })

  it('accepts an already-parsed object', () => {
    const c = parseNetworkConfig({ network: '10.3.0.0/16', Backend: { Type: 'vxlan' } })
    expect(c.subnetMin?.toString()).toBe('10.3.1.0/24')
    expect(c.backendType).toBe('vxlan')
  })

  it.each([
    [
      '{"Network":"10.3.0.0/16","SubnetLen":"24"}',
      'json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint',
      'SubnetLen',
      '24',
    ],
    [
      '{"Network":"10.3.0.0/16","SubnetLen":-1}',
      'json: cannot unmarshal number -1 into Go struct field Config.SubnetLen of type uint',
      'SubnetLen',
      -1,
    ],
    [
      '{"Network":"10.3.0.0/16","SubnetLen":24.0}',
      'json: cannot unmarshal number 24.0 into Go struct field Config.SubnetLen of type uint',
      'SubnetLen',
      24,
    ],
    [
      '{"Network":"10.3.0.0/16","EnableIPv6":"true"}',
      'json: cannot unmarshal string into Go struct field Config.EnableIPv6 of type bool',
      'EnableIPv6',
      'true',
    ],
    [
      '{"Network":"10.3.0.0/16","ipv6subnetlen":[64]}',
      'json: cannot unmarshal array into Go struct field Config.IPv6SubnetLen of type uint',
      'IPv6SubnetLen',
      [64],
    ],
    ['{"Network":"10.3.0.0"}', 'invalid CIDR address: 10.3.0.0', 'Network', '10.3.0.0'],
    ['{"Network":"10.3.0.0/33"}', 'invalid CIDR address: 10.3.0.0/33', 'Network', '10.3.0.0/33'],
    ['{"Network":"fc00::/48"}', 'invalid CIDR address: fc00::/48', 'Network', 'fc00::/48'],
    ['{"Network":16}', 'invalid CIDR address: 16', 'Network', '16'],
    [
      '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1"}',
      'invalid IP address format',
      'SubnetMin',
      '10.3.1',
    ],
    [
      '{"EnableIPv6":true,"IPv6Network":"fc00::/48","IPv6SubnetMax":"fc00::g"}',
      'invalid IP address format',
      'IPv6SubnetMax',
      'fc00::g',
    ],
    ['[1]', 'json: cannot unmarshal array into Go value of type subnet.Config', undefined, [1]],
  ])('%s is rejected with %j', (json, message, field, value) => {
    const err = errorOf(json)
    expect(err.message).toBe(message)
    expect(err.field).toBe(field)
    expect(err.value).toEqual(value)
  })

  it('reports a bad address before a type mismatch seen earlier, like Go', () => {
    expect(errorOf('{"SubnetLen":"x","Network":"nope"}').message).toBe('invalid CIDR address: nope')
  })

  it.each([
    ['', 'unexpected end of JSON input'],
    ['{"Network":', 'unexpected end of JSON input'],
    ['{"Network":}', "invalid character '}' looking for beginning of value"],
    ['{"Network" "x"}', "invalid character '\"' after object key"],
    [
      '{"Network":"10.3.0.0/16",}',
      "invalid character '}' looking for beginning of object key string",
    ],
    ['{"Network":"10.3.0.0/16" "x":1}', "invalid character '\"' after object key:value pair"],
    ['{Network:1}', "invalid character 'N' looking for beginning of object key string"],
    ['{"SubnetLen":tru}', "invalid character '}' in literal true (expecting 'e')"],
    ['{"SubnetLen":1.}', "invalid character '}' after decimal point in numeric literal"],
    ['{"SubnetLen":-}', "invalid character '}' in numeric literal"],
    ['{"SubnetLen":1e}', "invalid character '}' in exponent of numeric literal"],
    ['{"a":"\\x"}', "invalid character 'x' in string escape code"],
    ['{"a":"\n"}', "invalid character '\\n' in string literal"],
    ['{} x', "invalid character 'x' after top-level value"],
    ['[1 2]', "invalid character '2' after array element"],
  ])('syntax error in %j: %s', (json, message) => {
    expect(errorOf(json).message).toBe(message)
  })
})

describe('parseNetworkConfig: nesting depth (Go encoding/json maxNestingDepth)', () => {
  // flanneld v0.28.10, measured: 10000 levels in all are read, 10001 are a syntax error
  // (`Couldn't fetch network config: invalid character '[' exceeded max depth`).
  const nested = (levels: number, open = '[', close = ']') =>
    `{"Network":"10.5.0.0/16","Backend":{"Type":"alloc","X":${open.repeat(levels)}${close.repeat(levels)}}}`

  it('reads a value nested 10000 levels deep in all, as Go does', () => {
    // outer object (1) + Backend (2) + 9998 arrays = 10000
    const config = parseNetworkConfig(nested(9998))
    let x = config.backend.X
    let depth = 2
    while (Array.isArray(x) && x.length === 1) {
      x = x[0]
      depth++
    }
    expect(depth + 1).toBe(10000)
  })

  it.each([
    [9999, '[', ']', "invalid character '[' exceeded max depth"],
    [9999, '{"a":', '}', "invalid character '{' exceeded max depth"],
    [200_000, '[', ']', "invalid character '[' exceeded max depth"],
  ])(
    '%i levels of %s under Backend: ConfigError naming Backend and depth 10001',
    (levels, open, close, message) => {
      const err = errorOf(nested(levels, open, close))
      expect(err.message).toBe(message)
      expect(err.field).toBe('Backend')
      expect(err.value).toBe(10001)
    },
  )

  it('names the top-level key as written and the depth for a deep unknown key', () => {
    const err = errorOf(
      `{"network":"10.5.0.0/16","deep":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
    )
    expect(err.message).toBe("invalid character '[' exceeded max depth")
    expect(err.field).toBe('deep')
    expect(err.value).toBe(10001)
  })

  it('reads an already-parsed object nested 10000 levels deep', () => {
    let x: unknown = []
    for (let i = 0; i < 9997; i++) x = [x]
    const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'alloc', X: x } })
    expect(config.backendType).toBe('alloc')
  })

  it('refuses an already-parsed object nested too deep, or with a cycle, with ConfigError', () => {
    let deep: unknown[] = []
    const root = deep
    for (let i = 0; i < 20_000; i++) {
      const inner: unknown[] = []
      deep.push(inner)
      deep = inner
    }
    const tooDeep = errorOf({ Network: '10.5.0.0/16', Backend: { Type: 'alloc', X: root } })
    expect(tooDeep.message).toBe('json: exceeded max depth')
    expect(tooDeep.field).toBe('Backend')
    expect(tooDeep.value).toBe(10001)
    const cyclic: Record<string, unknown> = { Type: 'alloc' }
    cyclic.self = cyclic
    expect(errorOf({ Network: '10.5.0.0/16', Backend: cyclic }).message).toBe(
      'json: unsupported value: encountered a cycle',
    )
  })
})

describe('parseNetworkConfig: fuzz (as upstream fuzzes ParseConfig)', () => {
  it('either returns a config or throws ConfigError, for any text', () => {
    const field = fc.constantFrom(
      'Network',
      'network',
      'SubnetLen',
      'SubnetMin',
      'SubnetMax',
      'EnableIPv6',
      'IPv6Network',
      'IPv6SubnetLen',
      'Backend',
      'EnableIPv4',
    )
    const value = fc.oneof(
      fc.jsonValue(),
      fc.constantFrom('10.3.0.0/16', '10.3.1.0', 'fc00::/48', 'fc00::1:0', 24, 64, true, false),
    )
    const doc = fc.oneof(
      fc.string(),
      fc.dictionary(field, value).map((o) => JSON.stringify(o)),
    )
    fc.assert(
      fc.property(doc, (text) => {
        try {
          const c = parseNetworkConfig(text)
          if (c.enableIPv4) expect(c.subnetMin?.prefixLength).toBe(c.subnetLen)
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError)
        }
      }),
      { numRuns: 500 },
    )
  })
})
