import { spawn } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { connect, createServer, type AddressInfo, type Socket } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { Subscription } from 'rxjs'
import {
  ConfigNotFoundError,
  Ip4Net,
  LeaseNotFoundError,
  RegistryUnavailableError,
  SubnetExhaustedError,
  isFlannelError,
  type LeaseEvent,
  type Logger,
} from '@flannel/core'
import {
  etcdMissingReason,
  etcdctlMissingReason,
  generateTestCertificates,
  startEtcd,
  type EtcdServer,
} from '@flannel/testkit/etcd'
import type { Etcd3 } from 'etcd3'
import { EtcdRegistry, EtcdRequestError, type EtcdRegistryOptions } from '@flannel/registry-etcd'

const missing = etcdMissingReason()
if (missing) console.warn(`EtcdRegistry integration tests skipped: ${missing}`)

const CONFIG = '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan"}}'

async function until<T>(
  fn: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  ms = 10_000,
): Promise<T> {
  const deadline = Date.now() + ms
  for (;;) {
    const v = await fn()
    if (v !== undefined && v !== false) return v
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

function collect(registry: EtcdRegistry): { batches: LeaseEvent[][]; sub: Subscription } {
  const batches: LeaseEvent[][] = []
  const sub = registry.watchLeases().subscribe({ next: (b) => batches.push(b) })
  return { batches, sub }
}

const describeEtcd = describe.skipIf(missing !== undefined)

/** A loopback TCP proxy whose connections can be cut (and refused) and restored. */
async function startProxy(target: number): Promise<{
  port: number
  cut(): void
  restore(): void
  close(): Promise<void>
}> {
  const sockets = new Set<Socket>()
  let open = true
  const server = createServer((client) => {
    if (!open) {
      client.destroy()
      return
    }
    const upstream = connect(target, '127.0.0.1')
    sockets.add(client).add(upstream)
    const drop = (): void => {
      client.destroy()
      upstream.destroy()
      sockets.delete(client)
      sockets.delete(upstream)
    }
    client.on('error', drop).on('close', drop)
    upstream.on('error', drop).on('close', drop)
    client.pipe(upstream).pipe(client)
  })
  await new Promise<void>((res) => server.listen(0, '127.0.0.1', res))
  const port = (server.address() as AddressInfo).port
  const cut = (): void => {
    open = false
    for (const s of sockets) s.destroy()
    sockets.clear()
  }
  return {
    port,
    cut,
    restore: () => {
      open = true
    },
    close: async () => {
      cut()
      await new Promise<void>((res) => server.close(() => res()))
    },
  }
}

describeEtcd(`EtcdRegistry on a real etcd${missing ? ` (skipped: ${missing})` : ''}`, () => {
  let etcd: EtcdServer
  let raw: Etcd3
  const registries: EtcdRegistry[] = []
  let prefixCounter = 0

  beforeAll(async () => {
    etcd = await startEtcd()
    raw = etcd.connect()
  })
  afterAll(async () => {
    for (const r of registries) await r.close()
    await etcd?.stop()
  })

  async function network(config = CONFIG): Promise<string> {
    const prefix = `/t${++prefixCounter}/network`
    await raw.put(`${prefix}/config`).value(config)
    return prefix
  }
  function registry(prefix: string, extra: Partial<EtcdRegistryOptions> = {}): EtcdRegistry {
    const r = new EtcdRegistry({ endpoints: etcd.endpoints, prefix, ...extra })
    registries.push(r)
    return r
  }
  async function subnetKeys(prefix: string): Promise<Record<string, string>> {
    return await raw.getAll().prefix(`${prefix}/subnets/`).strings()
  }

  it('reads the config and reports a missing one with flanneld text', async () => {
    const prefix = await network()
    const config = await registry(prefix).getNetworkConfig()
    expect(config.network?.toString()).toBe('10.5.0.0/16')
    expect(config.backendType).toBe('vxlan')
    const err = await registry('/nothing/here')
      .getNetworkConfig()
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(ConfigNotFoundError)
    expect((err as Error).message).toBe(
      'flannel config not found in etcd store. Did you create your config using etcdv3 API?',
    )
  })

  it('writes flanneld key and value bytes on a fresh 86400 s etcd lease; renew grants a new lease', async () => {
    const prefix = await network()
    const r = registry(prefix)
    const attrs = {
      publicIP: '192.0.2.7',
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: 'c6:d2:32:6f:8f:44' },
    }
    const lease = await r.acquireLease(attrs)
    const key = `${prefix}/subnets/${lease.subnet.toKey()}`
    expect(Object.keys(await subnetKeys(prefix))).toEqual([key])
    const res = await raw.kv.range({ key: Buffer.from(key) })
    const kv = res.kvs[0]!
    expect(kv.value.toString()).toBe(
      '{"PublicIP":"192.0.2.7","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"c6:d2:32:6f:8f:44"}}',
    )
    expect(kv.lease).not.toBe('0')
    const ttl = await raw.leaseClient.leaseTimeToLive({ ID: kv.lease, keys: true })
    expect(ttl.grantedTTL).toBe('86400')
    expect(ttl.keys.map((k) => k.toString())).toEqual([key])
    expect(lease.expiration.getTime()).toBeGreaterThan(Date.now() + 86_000_000)

    const renewed = await r.renewLease(lease)
    const kv2 = (await raw.kv.range({ key: Buffer.from(key) })).kvs[0]!
    expect(kv2.value.toString()).toBe(kv.value.toString())
    expect(kv2.lease).not.toBe(kv.lease)
    expect((await raw.leaseClient.leaseTimeToLive({ ID: kv2.lease })).grantedTTL).toBe('86400')
    expect(renewed.subnet.equals(lease.subnet)).toBe(true)
  })

  it('honours the leaseTtlSeconds option', async () => {
    const prefix = await network()
    const lease = await registry(prefix, { leaseTtlSeconds: 120 }).acquireLease({
      publicIP: '192.0.2.8',
    })
    const kv = (
      await raw.kv.range({ key: Buffer.from(`${prefix}/subnets/${lease.subnet.toKey()}`) })
    ).kvs[0]!
    expect((await raw.leaseClient.leaseTimeToLive({ ID: kv.lease })).grantedTTL).toBe('120')
  })

  it('reads leases written by flanneld (dual-stack key, mixed-case JSON) and reuses its own by PublicIP', async () => {
    const prefix = await network(
      '{"Network":"10.6.0.0/16","EnableIPv6":true,"IPv6Network":"fd00:6::/56","Backend":{"Type":"host-gw"}}',
    )
    const grant = await raw.leaseClient.leaseGrant({ TTL: 86400 })
    await raw
      .put(`${prefix}/subnets/10.6.9.0-24&fd00:6:0:9::-64`)
      .value('{"PublicIP":"192.0.2.50","PublicIPv6":"fd00::50","BackendType":"host-gw"}')
      .lease(grant.ID)
    const r = registry(prefix)
    const { batches, sub } = collect(r)
    try {
      const first = await until(() => batches[0], 'snapshot')
      expect(first).toHaveLength(1)
      expect(first[0]!.lease.subnet.toString()).toBe('10.6.9.0/24')
      expect(first[0]!.lease.ipv6Subnet?.toString()).toBe('fd00:6:0:9::/64')
      expect(first[0]!.lease.attrs).toEqual({
        publicIP: '192.0.2.50',
        publicIPv6: 'fd00::50',
        backendType: 'host-gw',
      })
    } finally {
      sub.unsubscribe()
    }
    const again = await r.acquireLease({
      publicIP: '192.0.2.50',
      publicIPv6: 'fd00::50',
      backendType: 'host-gw',
    })
    expect(again.subnet.toString()).toBe('10.6.9.0/24')
    expect(again.ipv6Subnet?.toString()).toBe('fd00:6:0:9::/64')
  })

  it('reuses the previous subnet when free, and reports exhaustion', async () => {
    const prefix = await network('{"Network":"10.7.0.0/28","Backend":{"Type":"alloc"}}')
    const r = registry(prefix)
    const lease = await r.acquireLease(
      { publicIP: '192.0.2.60' },
      { previous: { subnet: Ip4Net.parse('10.7.0.8/30') } },
    )
    expect(lease.subnet.toString()).toBe('10.7.0.8/30')
    await r.acquireLease({ publicIP: '192.0.2.61' })
    await r.acquireLease({ publicIP: '192.0.2.62' })
    const err = await r.acquireLease({ publicIP: '192.0.2.63' }).catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SubnetExhaustedError)
    expect((err as Error).message).toBe('out of subnets')
  })

  it('100 registries acquiring at once get 100 distinct subnets inside SubnetMin..SubnetMax', async () => {
    const prefix = await network(
      '{"Network":"10.8.0.0/16","SubnetMin":"10.8.10.0","SubnetMax":"10.8.200.0","Backend":{"Type":"alloc"}}',
    )
    const many = Array.from({ length: 100 }, () => registry(prefix))
    const leases = await Promise.all(
      many.map((r, i) => r.acquireLease({ publicIP: `198.51.100.${i + 1}` })),
    )
    const subnets = new Set(leases.map((l) => l.subnet.toString()))
    expect(subnets.size).toBe(100)
    for (const l of leases) {
      const third = (l.subnet.ip >>> 8) & 255
      expect(third).toBeGreaterThanOrEqual(10)
      expect(third).toBeLessThanOrEqual(200)
      expect(l.subnet.prefixLength).toBe(24)
    }
    expect(Object.keys(await subnetKeys(prefix))).toHaveLength(100)
    const conflicts = many.reduce((n, r) => n + r.stats.createConflicts, 0)
    console.info(`100 concurrent acquisitions: ${conflicts} lost create races retried`)
    await Promise.all(many.map((r) => r.close()))
  })

  it('renewing a deleted lease fails with LeaseNotFoundError and does not re-create it', async () => {
    const prefix = await network()
    const r = registry(prefix)
    const lease = await r.acquireLease({ publicIP: '192.0.2.70' })
    await r.releaseLease(lease)
    expect(await subnetKeys(prefix)).toEqual({})
    await expect(r.renewLease(lease)).rejects.toBeInstanceOf(LeaseNotFoundError)
    expect(await subnetKeys(prefix)).toEqual({})
  })

  it('respects a reservation and lets the host with its PublicIP reuse it', async () => {
    const prefix = await network('{"Network":"10.9.0.0/28","Backend":{"Type":"alloc"}}')
    // 10.9.0.0/28: SubnetLen 30, allocatable 10.9.0.4, .8 and .12; all three reserved.
    const key = `${prefix}/subnets/10.9.0.4-30`
    await raw.put(key).value('{"PublicIP":"192.0.2.80","PublicIPv6":null}')
    await raw
      .put(`${prefix}/subnets/10.9.0.8-30`)
      .value('{"PublicIP":"192.0.2.82","PublicIPv6":null}')
    await raw
      .put(`${prefix}/subnets/10.9.0.12-30`)
      .value('{"PublicIP":"192.0.2.83","PublicIPv6":null}')
    const err = await registry(prefix)
      .acquireLease({ publicIP: '192.0.2.81' })
      .catch((e: unknown) => e)
    expect(err).toBeInstanceOf(SubnetExhaustedError)
    expect((await raw.kv.range({ key: Buffer.from(key) })).kvs[0]!.lease).toBe('0')
    const lease = await registry(prefix).acquireLease({
      publicIP: '192.0.2.80',
      backendType: 'host-gw',
    })
    expect(lease.subnet.toString()).toBe('10.9.0.4/30')
    const kv = (await raw.kv.range({ key: Buffer.from(key) })).kvs[0]!
    expect(kv.value.toString()).toBe(
      '{"PublicIP":"192.0.2.80","PublicIPv6":null,"BackendType":"host-gw"}',
    )
    // as flanneld v3: a reused reservation gets a 24 h lease
    expect((await raw.leaseClient.leaseTimeToLive({ ID: kv.lease })).grantedTTL).toBe('86400')
  })

  it('watch: snapshot, then deltas; removal carries cached attrs; garbage is skipped and never removes peers', async () => {
    const prefix = await network()
    const a = registry(prefix)
    const la = await a.acquireLease({
      publicIP: '192.0.2.91',
      backendType: 'vxlan',
      backendData: { VNI: 1, VtepMAC: '0e:00:00:00:00:91' },
    })
    const w = registry(prefix)
    const { batches, sub } = collect(w)
    try {
      const snap = await until(() => batches[0], 'snapshot')
      expect(snap.map((e) => [e.type, e.lease.subnet.toString()])).toEqual([
        ['added', la.subnet.toString()],
      ])
      const lb = await registry(prefix).acquireLease({ publicIP: '192.0.2.92' })
      await until(() => batches.length >= 2, 'added event')
      expect(batches[1]!.map((e) => [e.type, e.lease.subnet.toString()])).toEqual([
        ['added', lb.subnet.toString()],
      ])
      await raw.put(`${prefix}/subnets/garbage`).value('x')
      await raw.put(`${prefix}/subnets/10.5.250.0-24`).value('not json')
      await raw.put(`${prefix}/subnets/${la.subnet.toKey()}`).value('{"PublicIP":""}')
      await raw.delete().key(`${prefix}/subnets/${lb.subnet.toKey()}`)
      await until(() => batches.length >= 3, 'removed event')
      expect(batches[2]).toEqual([
        { type: 'removed', lease: expect.objectContaining({ attrs: { publicIP: '192.0.2.92' } }) },
      ])
      // the overwritten-with-garbage lease of A was not removed
      await raw.delete().key(`${prefix}/subnets/${la.subnet.toKey()}`)
      await until(() => batches.length >= 4, 'removal of A')
      expect(batches[3]).toEqual([
        {
          type: 'removed',
          lease: expect.objectContaining({
            attrs: {
              publicIP: '192.0.2.91',
              backendType: 'vxlan',
              backendData: { VNI: 1, VtepMAC: '0e:00:00:00:00:91' },
            },
          }),
        },
      ])
      expect(batches.flat().filter((e) => e.type === 'removed')).toHaveLength(2)
    } finally {
      sub.unsubscribe()
    }
  })

  const vxlanValue = (publicIP: string, mac: string): string =>
    `{"PublicIP":"${publicIP}","PublicIPv6":null,"BackendType":"vxlan","BackendData":{"VNI":1,"VtepMAC":"${mac}"}}`

  /** Puts a lease for `key` and waits until every watch in `watches` has seen it: all earlier changes are processed then. */
  async function barrier(prefix: string, key: string, watches: LeaseEvent[][][]): Promise<void> {
    await raw.put(`${prefix}/subnets/${key}`).value(vxlanValue('192.0.2.250', '0e:00:00:00:00:fa'))
    const subnet = Ip4Net.parse(key.replace('-', '/')).toString()
    for (const batches of watches) {
      await until(
        () =>
          batches.flat().some((e) => e.type === 'added' && e.lease.subnet.toString() === subnet),
        `${key} seen`,
      )
    }
  }

  it('keys with host bits set (or in any other form flanneld does not write) are not leases: no event, no reuse', async () => {
    const prefix = await network()
    const put = (key: string, value: string) => raw.put(`${prefix}/subnets/${key}`).value(value)
    await put('10.5.85.0-24', vxlanValue('192.0.2.85', '0e:00:00:00:00:85'))
    // already there before anybody reads: a host-bit key carrying the PublicIP of the next host
    await put('10.5.7.9-24', vxlanValue('192.0.2.77', '0e:00:00:00:00:77'))
    const w = registry(prefix)
    const { batches, sub } = collect(w)
    try {
      const snap = await until(() => batches[0], 'snapshot')
      expect(snap.map((e) => e.lease.subnet.toString())).toEqual(['10.5.85.0/24'])
      const hostile = [
        '10.5.85.5-24', // the issue: a peer's subnet with host bits
        '10.5.85.0-024',
        'junk10.5.85.0-24',
        '10.5.85.0-24&fd00::1-64',
        '10.5.85.0-24&fd00:0:0:0::-64',
      ]
      for (const key of hostile) await put(key, vxlanValue('192.0.2.66', '0e:00:00:00:00:66'))
      for (const key of hostile) await raw.delete().key(`${prefix}/subnets/${key}`)
      await barrier(prefix, '10.5.99.0-24', [batches])
      expect(batches.slice(1).map((b) => b.map((e) => `${e.type} ${e.lease.subnet}`))).toEqual([
        ['added 10.5.99.0/24'],
      ])
      // reuse by PublicIP never takes the host-bit key (flanneld would, and use 10.5.7.9/24)
      const lease = await registry(prefix).acquireLease({ publicIP: '192.0.2.77' })
      expect(lease.subnet.toString()).not.toBe('10.5.7.9/24')
      expect(lease.subnet.masked()).toBe(lease.subnet)
      expect(Object.keys(await subnetKeys(prefix))).toContain(
        `${prefix}/subnets/${lease.subnet.toKey()}`,
      )
    } finally {
      sub.unsubscribe()
    }
  })

  it('renew and release refuse a lease whose subnet has host bits set, touching no key', async () => {
    const prefix = await network()
    const r = registry(prefix)
    const lease = await r.acquireLease({ publicIP: '192.0.2.31' })
    const bogus = new Ip4Net(lease.subnet.ip + 5, lease.subnet.prefixLength)
    await raw.put(`${prefix}/subnets/${bogus.toKey()}`).value('{"PublicIP":"192.0.2.66"}')
    const before = await subnetKeys(prefix)
    for (const call of [
      () => r.renewLease({ ...lease, subnet: bogus }),
      () => r.releaseLease({ ...lease, subnet: bogus }),
    ]) {
      const err = await call().catch((e: unknown) => e)
      expect(isFlannelError(err, 'INVALID_ARGUMENT')).toBe(true)
      expect((err as Error).message).toContain('has host bits set')
    }
    expect(await subnetKeys(prefix)).toEqual(before)
  })

  it('warns about a bad entry once per value it takes, however many listings and watches meet it', async () => {
    const prefix = await network()
    const warned: string[] = []
    const logger: Logger = {
      trace: () => undefined,
      debug: () => undefined,
      info: () => undefined,
      warn: (obj: unknown, msg?: string) => {
        const o = obj as { key?: string; value?: string }
        if (msg === 'ignoring unparsable lease entry in etcd') warned.push(`${o.key} ${o.value}`)
      },
      error: () => undefined,
      child: () => logger,
    }
    const bad = `${prefix}/subnets/garbage`
    const hostBits = `${prefix}/subnets/10.5.85.5-24`
    await raw.put(bad).value('x')
    await raw.put(hostBits).value(vxlanValue('192.0.2.66', '0e:00:00:00:00:66'))
    const r = registry(prefix, { logger })
    // as the Agent: acquisition lists, then a watch for the network and one for the own lease
    await r.acquireLease({ publicIP: '192.0.2.10' })
    const one = collect(r)
    const two = collect(r)
    try {
      await until(() => one.batches[0] && two.batches[0], 'snapshots')
      expect(warned.sort()).toEqual(
        [`${bad} x`, `${hostBits} ${vxlanValue('192.0.2.66', '0e:00:00:00:00:66')}`].sort(),
      )
      warned.length = 0
      await raw.put(bad).value('x') // written again, same value: nothing new
      await raw.put(bad).value('y') // a new value: one warning
      await barrier(prefix, '10.5.98.0-24', [one.batches, two.batches])
      expect(warned).toEqual([`${bad} y`])
      warned.length = 0
      await raw.delete().key(bad) // gone, then back: a new entry, one warning
      await raw.put(bad).value('y')
      await barrier(prefix, '10.5.97.0-24', [one.batches, two.batches])
      expect(warned).toEqual([`${bad} y`])
      warned.length = 0
      await raw.put(bad).value(vxlanValue('192.0.2.67', '0e:00:00:00:00:67')) // not a lease key either
      await raw.put(hostBits).value('{"PublicIP":"192.0.2.68"}')
      await barrier(prefix, '10.5.96.0-24', [one.batches, two.batches])
      expect(warned.length).toBe(2)
      warned.length = 0
      await r.acquireLease({ publicIP: '192.0.2.10' }) // lists again: nothing new
      expect(warned).toEqual([])
    } finally {
      one.sub.unsubscribe()
      two.sub.unsubscribe()
    }
  })

  it('a subnet whose etcd lease ran out can be taken by another host', async () => {
    const prefix = await network('{"Network":"10.10.0.0/28","Backend":{"Type":"alloc"}}')
    // 10.10.0.0/28: three /30 subnets; two are held for good, one on a 2 s lease
    await raw
      .put(`${prefix}/subnets/10.10.0.8-30`)
      .value('{"PublicIP":"192.0.2.2","PublicIPv6":null}')
    await raw
      .put(`${prefix}/subnets/10.10.0.12-30`)
      .value('{"PublicIP":"192.0.2.3","PublicIPv6":null}')
    const first = await registry(prefix, { leaseTtlSeconds: 2 }).acquireLease({
      publicIP: '192.0.2.1',
    })
    expect(first.subnet.toString()).toBe('10.10.0.4/30')
    const other = registry(prefix)
    await expect(other.acquireLease({ publicIP: '192.0.2.9' })).rejects.toBeInstanceOf(
      SubnetExhaustedError,
    )
    await until(async () => Object.keys(await subnetKeys(prefix)).length === 2, 'expiry', 15_000)
    const taken = await other.acquireLease({ publicIP: '192.0.2.9' })
    expect(taken.subnet.toString()).toBe('10.10.0.4/30')
  })

  it('an etcd lease running out becomes a removal', async () => {
    const prefix = await network()
    const short = registry(prefix, { leaseTtlSeconds: 2 })
    const w = registry(prefix)
    const { batches, sub } = collect(w)
    try {
      await until(() => batches[0], 'snapshot')
      const lease = await short.acquireLease({ publicIP: '192.0.2.99' })
      await until(() => batches.flat().find((e) => e.type === 'removed'), 'expiry removal', 15_000)
      expect(batches.flat().map((e) => [e.type, e.lease.subnet.toString()])).toEqual([
        ['added', lease.subnet.toString()],
        ['removed', lease.subnet.toString()],
      ])
    } finally {
      sub.unsubscribe()
    }
  })
})

describeEtcd(`EtcdRegistry watch recovery${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('after compaction past a cut-off watcher, resumes with exactly the difference', async () => {
    const etcd = await startEtcd()
    const raw = etcd.connect()
    const proxy = await startProxy(Number(new URL(etcd.endpoints[0]!).port))
    const prefix = '/compact/network'
    await raw.put(`${prefix}/config`).value(CONFIG)
    const put = (s: string, ip: string) =>
      raw.put(`${prefix}/subnets/${s}`).value(`{"PublicIP":"${ip}","PublicIPv6":null}`)
    await put('10.5.1.0-24', '192.0.2.1')
    await put('10.5.2.0-24', '192.0.2.2')
    await put('10.5.4.0-24', '192.0.2.4')
    const r = new EtcdRegistry({
      endpoints: `http://127.0.0.1:${proxy.port}`,
      prefix,
      requestTimeoutMs: 1000,
    })
    const { batches, sub } = collect(r)
    try {
      await until(() => batches[0]?.length === 3, 'snapshot')
      proxy.cut() // the registry loses etcd while history moves on
      await raw.put(`${prefix}/subnets/10.5.4.0-24`).value('garbage') // never a removal
      await raw.delete().key(`${prefix}/subnets/10.5.1.0-24`)
      await put('10.5.3.0-24', '192.0.2.3')
      await put('10.5.2.0-24', '192.0.2.2') // same value again: not a difference
      const rev = (await raw.kv.range({ key: Buffer.from(`${prefix}/config`) })).header.revision
      await raw.kv.compact({ revision: rev, physical: true })
      await new Promise((res) => setTimeout(res, 300))
      expect(batches).toHaveLength(1)
      proxy.restore()
      await until(() => batches.length >= 2, 'resync batch', 20_000)
      await new Promise((res) => setTimeout(res, 300))
      const after = batches.slice(1).flat()
      const summary = after.map((e) => `${e.type} ${e.lease.subnet.toString()}`).sort()
      expect(summary).toEqual(['added 10.5.3.0/24', 'removed 10.5.1.0/24'])
      expect(after.find((e) => e.type === 'removed')!.lease.attrs.publicIP).toBe('192.0.2.1')
    } finally {
      sub.unsubscribe()
      await r.close()
      await proxy.close()
      await etcd.stop()
    }
  })

  it('outage: calls fail typed after the timeout, watch stays silent, then resumes with only real changes', async () => {
    let attempts = 0
    const counting: Logger = {
      trace: () => undefined,
      debug: (...args: unknown[]) => {
        if (args.includes('etcd request failed, retrying')) attempts++
      },
      info: () => undefined,
      warn: () => undefined,
      error: () => undefined,
      child: () => counting,
    }
    const etcd = await startEtcd()
    const raw = etcd.connect()
    const prefix = '/outage/network'
    await raw.put(`${prefix}/config`).value(CONFIG)
    const r = new EtcdRegistry({
      endpoints: etcd.endpoints,
      prefix,
      // tight enough to see failures quickly, loose enough for a loaded CI machine
      requestTimeoutMs: 2000,
      dialTimeoutMs: 1000,
      logger: counting,
    })
    const peer = new EtcdRegistry({ endpoints: etcd.endpoints, prefix })
    try {
      const own = await r.acquireLease({ publicIP: '192.0.2.11' })
      const other = await peer.acquireLease({ publicIP: '192.0.2.12' })
      const { batches, sub } = collect(r)
      try {
        await until(() => batches[0]?.length === 2, 'snapshot')
        // frozen etcd: the call runs into its deadline
        await etcd.pause()
        const frozen = await r.getNetworkConfig().catch((e: unknown) => e)
        expect(frozen).toBeInstanceOf(RegistryUnavailableError)
        etcd.resume()
        // etcd gone for 10 s: calls fail typed, the watch stays silent
        const downAt = Date.now()
        await etcd.kill()
        const err = await r.renewLease(own).catch((e: unknown) => e)
        expect(err).toBeInstanceOf(RegistryUnavailableError)
        expect(isFlannelError(err, 'REGISTRY_UNAVAILABLE')).toBe(true)
        await new Promise((res) => setTimeout(res, Math.max(0, 10_000 - (Date.now() - downAt))))
        expect(batches).toHaveLength(1) // nothing invented during the outage
        // backoff, not a hot loop: a few dozen retries in 10 s (a hot loop makes thousands)
        expect(attempts).toBeGreaterThan(0)
        expect(attempts).toBeLessThan(300)
        await etcd.restart()
        const renewed = await r.renewLease(own)
        expect(renewed.expiration.getTime()).toBeGreaterThan(Date.now() + 86_000_000)
        // a real change after the outage arrives; no removals ever
        await peer.releaseLease(other)
        await until(
          () => batches.flat().find((e) => e.type === 'removed'),
          'removal after restart',
          20_000,
        )
        const later = batches.slice(1).flat()
        expect(
          later.filter((e) => e.type === 'removed').map((e) => e.lease.subnet.toString()),
        ).toEqual([other.subnet.toString()])
        expect(later.filter((e) => e.type === 'removed')[0]!.lease.attrs.publicIP).toBe(
          '192.0.2.12',
        )
      } finally {
        sub.unsubscribe()
      }
    } finally {
      await r.close()
      await peer.close()
      await etcd.stop()
    }
  }, 60_000)

  it('an aborted call rejects with AbortError', async () => {
    const etcd = await startEtcd()
    try {
      const r = new EtcdRegistry({ endpoints: etcd.endpoints, prefix: '/abort' })
      await etcd.kill()
      const ac = new AbortController()
      const p = r.getNetworkConfig({ signal: ac.signal })
      setTimeout(() => ac.abort(), 100)
      const err = await p.catch((e: unknown) => e)
      expect(isFlannelError(err, 'ABORTED')).toBe(true)
      await r.close()
    } finally {
      await etcd.stop()
    }
  })
})

describeEtcd(`EtcdRegistry over TLS${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('connects with a CA and client certificate generated in the test', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'fl-tls-'))
    const certs = await generateTestCertificates(dir)
    const etcd = await startEtcd({ tls: { certificates: certs, clientCertAuth: true } })
    try {
      expect(etcd.endpoints[0]).toMatch(/^https:/)
      await etcd.connect().put('/tls/network/config').value(CONFIG)
      const r = new EtcdRegistry({
        endpoints: etcd.endpoints,
        prefix: '/tls/network',
        tls: { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey },
      })
      const lease = await r.acquireLease({ publicIP: '192.0.2.44' })
      expect(lease.subnet.prefixLength).toBe(24)
      await r.close()
      // without a client certificate etcd refuses: a typed error, no hang
      const noCert = new EtcdRegistry({
        endpoints: etcd.endpoints,
        prefix: '/tls/network',
        tls: { ca: certs.ca },
        requestTimeoutMs: 1000,
      })
      const err = await noCert.getNetworkConfig().catch((e: unknown) => e)
      expect(isFlannelError(err)).toBe(true)
      await noCert.close()
    } finally {
      await etcd.stop()
      await rm(dir, { recursive: true, force: true })
    }
  })
})

const authMissing = missing ?? etcdctlMissingReason()
describe.skipIf(authMissing !== undefined)(
  `EtcdRegistry with etcd authentication${authMissing ? ` (skipped: ${authMissing})` : ''}`,
  () => {
    it('authenticates with username and password; a wrong password is a typed error', async () => {
      const etcd = await startEtcd()
      try {
        await etcd.etcdctl('user', 'add', 'root:rootpw')
        await etcd.etcdctl('user', 'grant-role', 'root', 'root')
        await etcd.etcdctl('auth', 'enable')
        await etcd.etcdctl('--user=root:rootpw', 'put', '/auth/network/config', CONFIG)
        const r = new EtcdRegistry({
          endpoints: etcd.endpoints,
          prefix: '/auth/network',
          auth: { username: 'root', password: 'rootpw' },
        })
        const lease = await r.acquireLease({ publicIP: '192.0.2.55' })
        const stored = await etcd.etcdctl(
          '--user=root:rootpw',
          'get',
          '--print-value-only',
          `/auth/network/subnets/${lease.subnet.toKey()}`,
        )
        expect(stored.trim()).toBe('{"PublicIP":"192.0.2.55","PublicIPv6":null}')
        await r.close()
        const wrong = new EtcdRegistry({
          endpoints: etcd.endpoints,
          prefix: '/auth/network',
          auth: { username: 'root', password: 'nope' },
          requestTimeoutMs: 2000,
        })
        const err = await wrong.getNetworkConfig().catch((e: unknown) => e)
        expect(err).toBeInstanceOf(EtcdRequestError)
        expect((err as Error).message).not.toContain('nope')
        await wrong.close()
      } finally {
        await etcd.stop()
      }
    })
  },
)

describeEtcd(`EtcdRegistry clean shutdown${missing ? ` (skipped: ${missing})` : ''}`, () => {
  it('a process that closes its registry exits by itself (no timers, sockets or watches left)', async () => {
    const etcd = await startEtcd()
    try {
      await etcd.connect().put('/exit/network/config').value(CONFIG)
      const fixture = fileURLToPath(new URL('./fixtures/exit-clean.ts', import.meta.url))
      const child = spawn(
        process.execPath,
        [
          '--conditions=@flannel/source',
          '--import',
          'tsx',
          fixture,
          etcd.endpoints[0]!,
          'http://127.0.0.1:1',
        ],
        {
          cwd: fileURLToPath(new URL('../../..', import.meta.url)),
          stdio: ['ignore', 'pipe', 'pipe'],
        },
      )
      let out = ''
      child.stdout.on('data', (c: Buffer) => (out += c.toString()))
      child.stderr.on('data', (c: Buffer) => (out += c.toString()))
      const code = await new Promise<number | string>((resolve) => {
        const timer = setTimeout(() => {
          child.kill('SIGKILL')
          resolve('still running after 25 s')
        }, 25_000)
        child.once('exit', (c, sig) => {
          clearTimeout(timer)
          resolve(c ?? sig ?? -1)
        })
      })
      expect(code, out).toBe(0)
      expect(out).toMatch(/done [1-9]\d* true/)
    } finally {
      await etcd.stop()
    }
  }, 40_000)
})
