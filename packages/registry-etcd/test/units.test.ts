import { describe, expect, it } from 'vitest'
import { InvalidArgumentError } from '@flannel/core'
import { EtcdRegistry } from '@flannel/registry-etcd'
import { keyLayout } from '../src/keys.js'
import { backoffDelay } from '../src/retry.js'
import { resolveOptions } from '../src/options.js'

describe('key layout', () => {
  it('joins like a path: duplicate and trailing slashes disappear', () => {
    const k = keyLayout('/coreos.com/network/')
    expect(k.config).toBe('/coreos.com/network/config')
    expect(k.lease('10.5.34.0-24')).toBe('/coreos.com/network/subnets/10.5.34.0-24')
    expect(keyLayout('//a//b').config).toBe('/a/b/config')
    expect(k.subnetKeyOf('/coreos.com/network/subnets/10.5.34.0-24')).toBe('10.5.34.0-24')
    expect(k.subnetKeyOf('/coreos.com/network/config')).toBeUndefined()
  })
})

describe('options', () => {
  it('applies flanneld defaults and splits a comma-separated endpoint list', () => {
    const o = resolveOptions({ endpoints: 'http://127.0.0.1:4001,http://127.0.0.1:2379' })
    expect(o.endpoints).toEqual(['http://127.0.0.1:4001', 'http://127.0.0.1:2379'])
    expect(o.prefix).toBe('/coreos.com/network')
    expect(o.leaseTtlSeconds).toBe(86400)
  })

  it.each([
    [{ endpoints: [] }, 'endpoints'],
    [{ endpoints: 'ftp://x:1' }, 'endpoints'],
    [{ endpoints: 'http://127.0.0.1' }, 'endpoints'],
    [{ endpoints: 'http://127.0.0.1:2379', leaseTtlSeconds: 0 }, 'leaseTtlSeconds'],
    [{ endpoints: 'http://127.0.0.1:2379', requestTimeoutMs: -1 }, 'requestTimeoutMs'],
    [{ endpoints: 'http://127.0.0.1:2379', dialTimeoutMs: 1.5 }, 'dialTimeoutMs'],
    [{ endpoints: 'http://127.0.0.1:2379', tls: { cert: '-----BEGIN X' } }, 'tls.key'],
    [{ endpoints: 'http://127.0.0.1:2379', tls: { ca: '/etc/ca.pem' } }, 'tls.ca'],
    [
      { endpoints: 'http://127.0.0.1:2379', auth: { username: '', password: 'x' } },
      'auth.username',
    ],
  ])('rejects %j naming %s', (options, field) => {
    let caught: unknown
    try {
      new EtcdRegistry(options as never)
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError)
    expect((caught as InvalidArgumentError).field).toBe(field)
  })

  it('never puts a password into an error', () => {
    let caught: unknown
    try {
      resolveOptions({
        endpoints: 'http://127.0.0.1:2379',
        auth: { username: 'u', password: 12345 as never },
      })
    } catch (err) {
      caught = err
    }
    expect(caught).toBeInstanceOf(InvalidArgumentError)
    expect((caught as InvalidArgumentError).field).toBe('auth.password')
    expect((caught as Error).message).not.toContain('12345')
  })
})

describe('backoff', () => {
  it('grows exponentially to the cap, with jitter between half and the full delay', () => {
    expect(backoffDelay(0, () => 0)).toBe(25)
    expect(backoffDelay(0, () => 0.999)).toBeLessThanOrEqual(50)
    expect(backoffDelay(3, () => 0)).toBe(200)
    expect(backoffDelay(20, () => 0.999)).toBeLessThanOrEqual(2000)
    expect(backoffDelay(20, () => 0)).toBe(1000)
  })
})
