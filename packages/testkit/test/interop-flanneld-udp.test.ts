/**
 * What real flanneld's udp backend does on the host and on the wire
 * (interop.md 2, item 21; udp-wire.md): the TUN device, its address, MTU and
 * route, and the exact UDP payload sent to a peer (the inner IPv4 packet with
 * nothing prepended). A small Node listener in the peer namespace records
 * the datagrams. Skipped with a printed reason when no flanneld binary is
 * available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { spawn, type ChildProcess } from 'node:child_process'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { encodeLeaseAttrs } from '@flannel/core/registry'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  SUBNET_FILE_WRITTEN,
  interopSkipReason,
  linkNamespaces,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-flanneld-udp: skipped: ${skipReason}`)

const PREFIX = '/udp/network'
const PEER_SUBNET = '10.244.200.0/24'

/** Prints each datagram received on 192.0.2.12:8285 as one hex line. */
const LISTENER = `
const s = require('node:dgram').createSocket('udp4')
s.on('message', (m) => process.stdout.write(m.toString('hex') + '\\n'))
s.bind(8285, '192.0.2.12', () => process.stdout.write('ready\\n'))
`

describe.skipIf(skipReason !== undefined)(
  `real flanneld udp backend${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    const p = runPrefix()
    const devA = `${p}a0`
    let etcd: InteropEtcd
    let a: Netns
    let b: Netns
    let dir: string
    let flanneld: Flanneld
    let listener: ChildProcess | undefined
    let received = ''
    let ownSubnet: string

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-udp-'))
      etcd = await startInteropEtcd()
      const client = etcd.connect()
      a = await Netns.create(`${p}-a`)
      b = await Netns.create(`${p}-b`)
      await linkNamespaces(
        { ns: a, dev: devA, cidr: '192.0.2.11/24' },
        { ns: b, dev: `${p}b0`, cidr: '192.0.2.12/24' },
      )
      await client
        .put(`${PREFIX}/config`)
        .value('{"Network":"10.244.0.0/16","Backend":{"Type":"udp"}}')
      const lease = client.lease(86400, { autoKeepAlive: false })
      await lease
        .put(`${PREFIX}/subnets/${PEER_SUBNET.replace('/', '-')}`)
        .value(encodeLeaseAttrs({ publicIP: '192.0.2.12' }))
      listener = spawn('ip', ['netns', 'exec', b.name, process.execPath, '-e', LISTENER], {
        stdio: ['ignore', 'pipe', 'inherit'],
      })
      listener.stdout?.on('data', (d: Buffer) => (received += d.toString()))
      for (let i = 0; i < 100 && !received.includes('ready'); i++) {
        await new Promise((r) => setTimeout(r, 50))
      }
      flanneld = Flanneld.start({
        netns: a,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: PREFIX,
        iface: devA,
        subnetFile: join(dir, 'subnet.env'),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      ownSubnet = (await flanneld.waitForLog(ALLOCATED))[1]!
      await flanneld.waitForLog(SUBNET_FILE_WRITTEN)
    }, 60_000)

    afterAll(async () => {
      listener?.kill()
      await flanneld?.stop()
      await a?.destroy()
      await b?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('creates flannel0 with <subnet>/32, MTU ext-28 and a route to the whole network', async () => {
      const [link] = JSON.parse(await a.ip('-j', 'addr', 'show', 'dev', 'flannel0')) as {
        mtu: number
        addr_info: { family: string; local: string; prefixlen: number }[]
      }[]
      expect(link!.mtu).toBe(1472)
      const v4 = link!.addr_info.filter((i) => i.family === 'inet')
      expect(v4.map((i) => `${i.local}/${i.prefixlen}`)).toEqual([`${ownSubnet.split('/')[0]}/32`])
      const routes = (await a.ip('route', 'show', 'dev', 'flannel0')).trim().split('\n')
      console.info(`flanneld flannel0 routes: ${JSON.stringify(routes)}`)
      // `ip route show dev flannel0` prints a bare `10.244.0.0/16` (no proto, no src)
      expect(routes.map((r) => r.trim())).toEqual(['10.244.0.0/16'])
    })

    it('sends the inner IPv4 packet as the whole UDP payload to the peer on port 8285', async () => {
      received = ''
      // ping from the own subnet address to an address in the peer's subnet
      await a
        .exec('ping', '-c', '1', '-W', '1', '-I', ownSubnet.split('/')[0]!, '10.244.200.7')
        .catch(() => undefined) // nobody answers; only the datagram matters
      for (let i = 0; i < 40 && received.trim() === ''; i++) {
        await new Promise((r) => setTimeout(r, 50))
      }
      const payload = Buffer.from(received.trim().split('\n')[0] ?? '', 'hex')
      console.info(`flanneld udp payload: ${payload.toString('hex')}`)
      expect(payload[0]).toBe(0x45) // IPv4, 20-byte header: nothing prepended
      expect(payload[9]).toBe(1) // ICMP
      expect(payload[8]).toBe(63) // ping sent TTL 64; the sending proxy already took one
      expect([...payload.subarray(12, 16)].join('.')).toBe(ownSubnet.split('/')[0])
      expect([...payload.subarray(16, 20)].join('.')).toBe('10.244.200.7')
      expect(payload.readUInt16BE(2)).toBe(payload.length) // total length = payload size
    })
  },
)
