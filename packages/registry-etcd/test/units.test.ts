import { describe, expect, it } from 'vitest'
import {
  InvalidArgumentError,
  RegistryUnavailableError,
  isFlannelError,
  silentLogger,
} from '@flannel/core'
import { EtcdPermissionDeniedError, GRPCUnavailableError } from 'etcd3'
import { EtcdRegistry, EtcdRequestError } from '@flannel/registry-etcd'
import { keyLayout } from '../src/keys.js'
import { backoffDelay, withRetry } from '../src/retry.js'
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

describe('withRetry', () => {
  const settings = { timeoutMs: 400, random: () => 0, logger: silentLogger }
  const unavailable = (): Error =>
    new GRPCUnavailableError('14 UNAVAILABLE: No connection established')

  it('retries transient failures and returns the first success', async () => {
    let calls = 0
    const value = await withRetry('op', settings, async () => {
      if (++calls < 3) throw unavailable()
      return 'ok'
    })
    expect([value, calls]).toEqual(['ok', 3])
  })

  it('gives each attempt the earlier of the overall deadline and attemptTimeoutMs', async () => {
    const deadlines: number[] = []
    const start = Date.now()
    await withRetry('op', { ...settings, timeoutMs: 60_000, attemptTimeoutMs: 100 }, async (d) => {
      deadlines.push(d)
      return 1
    })
    expect(deadlines[0]!).toBeLessThanOrEqual(Date.now() + 100)
    expect(deadlines[0]!).toBeGreaterThanOrEqual(start + 100)
  })

  it('ends with RegistryUnavailableError when the budget runs out on transient failures', async () => {
    const err = await withRetry('list leases', settings, async () => {
      throw unavailable()
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(RegistryUnavailableError)
    expect((err as Error).message).toMatch(
      /^etcd unavailable: list leases did not succeed within 400 ms/,
    )
  })

  it('does not retry a refusal: EtcdRequestError at once', async () => {
    let calls = 0
    const err = await withRetry('read config', settings, async () => {
      calls++
      throw new EtcdPermissionDeniedError('etcdserver: permission denied')
    }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(EtcdRequestError)
    expect(calls).toBe(1)
  })

  it('rejects with AbortError as soon as the signal aborts', async () => {
    const ac = new AbortController()
    const p = withRetry('op', { ...settings, timeoutMs: 60_000, signal: ac.signal }, async () => {
      throw unavailable()
    })
    setTimeout(() => ac.abort(), 30)
    const err = await p.catch((e: unknown) => e)
    expect(isFlannelError(err, 'ABORTED')).toBe(true)
  })
})
