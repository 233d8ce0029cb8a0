import { describe, expect, it } from 'vitest'
import { ConfigError, backendOption, parseNetworkConfig } from '@flannel/core'

const backend = parseNetworkConfig(
  '{"Network":"10.3.0.0/16","Backend":{"Type":"vxlan","vni":4096,"directRouting":true,"Port":8472,"MTU":1.5,"Interfaces":"eth0","RouteTableIDs":["rtb-1","rtb-2"],"Nested":{"a":1},"Gone":null}}',
).backend

describe('backendOption', () => {
  it('finds keys case-insensitively, like Go encoding/json', () => {
    expect(backendOption(backend, 'VNI', 'integer')).toBe(4096)
    expect(backendOption(backend, 'DirectRouting', 'boolean')).toBe(true)
    expect(backendOption(backend, 'port', 'number')).toBe(8472)
    expect(backendOption(backend, 'type', 'string')).toBe('vxlan')
    expect(backendOption(backend, 'nested', 'object')).toEqual({ a: 1 })
  })

  it('returns undefined for an absent key and for null', () => {
    expect(backendOption(backend, 'GBP', 'boolean')).toBeUndefined()
    expect(backendOption(backend, 'Gone', 'string')).toBeUndefined()
    expect(backendOption({}, 'VNI', 'integer')).toBeUndefined()
  })

  it('turns a string or an array of strings into string[]', () => {
    expect(backendOption(backend, 'interfaces', 'strings')).toEqual(['eth0'])
    expect(backendOption(backend, 'RouteTableIDs', 'strings')).toEqual(['rtb-1', 'rtb-2'])
  })

  it('lets the last spelling win when several are present', () => {
    expect(backendOption({ vni: 1, VNI: 2 }, 'VNI', 'integer')).toBe(2)
    expect(backendOption({ VNI: 2, vni: 1 }, 'VNI', 'integer')).toBe(1)
  })

  it.each([
    ['VNI', 'string', 'invalid Backend.VNI 4096: expected a string', 4096],
    ['MTU', 'integer', 'invalid Backend.MTU 1.5: expected an integer', 1.5],
    ['Type', 'number', 'invalid Backend.Type "vxlan": expected a number', 'vxlan'],
    ['Port', 'boolean', 'invalid Backend.Port 8472: expected true or false', 8472],
    [
      'RouteTableIDs',
      'object',
      'invalid Backend.RouteTableIDs ["rtb-1","rtb-2"]: expected an object',
      ['rtb-1', 'rtb-2'],
    ],
    [
      'Nested',
      'strings',
      'invalid Backend.Nested {"a":1}: expected a string or an array of strings',
      { a: 1 },
    ],
  ] as const)('rejects %s read as %s', (name, kind, message, value) => {
    let caught: unknown
    try {
      backendOption(backend, name, kind)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(ConfigError)
    const err = caught as ConfigError
    expect(err.message).toBe(message)
    expect(err.field).toBe(`Backend.${name}`)
    expect(err.value).toEqual(value)
  })

  it('rejects an array holding a non-string', () => {
    expect(() => backendOption({ Interfaces: ['eth0', 1] }, 'Interfaces', 'strings')).toThrow(
      'invalid Backend.Interfaces ["eth0",1]: expected a string or an array of strings',
    )
  })
})
