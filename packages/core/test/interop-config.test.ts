/**
 * Config matrix against real flanneld (interop.md 2, item 1).
 *
 * Each row holds a network config and what flanneld v0.28.10 made of it,
 * recorded from its log (`Picking subnet in range A ... B`, the allocated
 * lease's prefix, `Couldn't fetch network config: <error>`, `Found network
 * config - Backend type: <type>`). The first suite checks our parser against
 * the recorded answers on every run; the second drives a real flanneld (alloc
 * backend, inside a network namespace) with every row and checks that it still
 * answers the same, and is skipped with a printed reason when no flanneld
 * binary is available.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import {
  ConfigError,
  UnknownBackendError,
  defineBackend,
  lookupBackend,
  parseNetworkConfig,
  type BackendFactory,
} from '@flannel/core'
import {
  ALLOCATED,
  Flanneld,
  Netns,
  PICKING_RANGE,
  PICKING_RANGE6,
  interopSkipReason,
  runPrefix,
  startInteropEtcd,
  type InteropEtcd,
} from '@flannel/testkit/flanneld'

interface Row {
  /** The config as stored in etcd. `alloc` is added as backend unless the row is about Backend. */
  readonly json: string
  /** What flanneld v0.28.10 did: `len min max`, `v6 len min max`, `type: x` or `error: text`. */
  readonly flanneld: string
  /** Row is about Backend: compare the backend type instead of the ranges. */
  readonly backend?: true
}

/** Dual-stack: flanneld's alloc backend needs an IPv4 address (IPv6-only makes it panic). */
const V6 = '"Network":"10.3.0.0/16","EnableIPv6":true'

/** Recorded from flanneld v0.28.10 (see packages/testkit/src/flanneld/README.md). */
const MATRIX: readonly Row[] = [
  // network sizes
  { json: '{"Network":"10.0.0.0/8"}', flanneld: '24 10.0.1.0 10.255.255.0' },
  { json: '{"Network":"10.3.0.0/16"}', flanneld: '24 10.3.1.0 10.3.255.0' },
  { json: '{"Network":"10.1.0.0/22"}', flanneld: '24 10.1.1.0 10.1.3.0' },
  { json: '{"Network":"10.1.0.0/23"}', flanneld: '25 10.1.0.128 10.1.1.128' },
  { json: '{"Network":"10.1.0.0/24"}', flanneld: '26 10.1.0.64 10.1.0.192' },
  { json: '{"Network":"10.1.0.0/28"}', flanneld: '30 10.1.0.4 10.1.0.12' },
  {
    json: '{"Network":"10.1.0.0/29"}',
    flanneld: 'error: network is too small. Minimum useful network prefix is /28',
  },
  // explicit SubnetLen
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":17}',
    flanneld: 'error: network must be able to accommodate at least four subnets',
  },
  { json: '{"Network":"10.3.0.0/16","SubnetLen":30}', flanneld: '30 10.3.0.4 10.3.255.252' },
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":31}',
    flanneld: 'error: SubnetLen must be less than /31',
  },
  {
    json: '{"Network":"10.3.0.0/16","SubnetMin":"10.3.5.0","SubnetMax":"10.3.8.0","SubnetLen":28}',
    flanneld: '28 10.3.5.0 10.3.8.0',
  },
  // unaligned and out-of-range SubnetMin/Max
  {
    json: '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.5"}',
    flanneld: 'error: SubnetMin is not on a SubnetLen boundary: 10.3.1.5',
  },
  {
    json: '{"Network":"10.3.0.0/16","SubnetMax":"10.3.200.1"}',
    flanneld: 'error: SubnetMax is not on a SubnetLen boundary: 10.3.200.1',
  },
  {
    json: '{"Network":"10.3.0.0/16","SubnetMin":"10.4.1.0"}',
    flanneld: 'error: SubnetMin is not in the range of the Network',
  },
  {
    json: '{"Network":"10.3.0.0/16","SubnetMax":"10.2.0.0"}',
    flanneld: 'error: SubnetMax is not in the range of the Network',
  },
  // lower-case keys, host bits
  { json: '{"network":"10.3.0.7/16","subnetlen":20}', flanneld: '20 10.3.16.0 10.3.240.0' },
  { json: '{"nEtWoRk":"10.3.0.0/16","subnetMIN":"10.3.7.0"}', flanneld: '24 10.3.7.0 10.3.255.0' },
  // missing network
  {
    json: '{}',
    flanneld: 'error: please define a correct Network parameter in the flannel config',
  },
  {
    json: '{"Network":"0.0.0.0/0"}',
    flanneld: 'error: please define a correct Network parameter in the flannel config',
  },
  // decoding errors (Go encoding/json texts)
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":"24"}',
    flanneld:
      'error: json: cannot unmarshal string into Go struct field Config.SubnetLen of type uint',
  },
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":-1}',
    flanneld:
      'error: json: cannot unmarshal number -1 into Go struct field Config.SubnetLen of type uint',
  },
  { json: '{"Network":"10.3.0.0"}', flanneld: 'error: invalid CIDR address: 10.3.0.0' },
  {
    json: '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1"}',
    flanneld: 'error: invalid IP address format',
  },
  {
    json: '{"Network":"10.3.0.0/16",',
    flanneld: 'error: unexpected end of JSON input',
    backend: true,
  },
  // Go encoding/json details
  {
    json: '{"network":"10.1.0.0/16","Network":"10.2.0.0/16"}',
    flanneld: '24 10.2.1.0 10.2.255.0',
  },
  { json: '{"Network":"10.3.0.0/16","Comment":{"a":[1]}}', flanneld: '24 10.3.1.0 10.3.255.0' },
  { json: '{"Network":"10.3.0.0/16","EnableIPv4":null}', flanneld: '24 10.3.1.0 10.3.255.0' },
  { json: '{"Network":"10.3.0.0/16","SubnetMin":"0.0.0.0"}', flanneld: '24 10.3.1.0 10.3.255.0' },
  { json: '{"Network":"10.3.0.0/16","\u017fubnetLen":20}', flanneld: '20 10.3.16.0 10.3.240.0' },
  { json: '{"Networ\u212a":"10.3.0.0/16"}', flanneld: '24 10.3.1.0 10.3.255.0' },
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":24.0}',
    flanneld:
      'error: json: cannot unmarshal number 24.0 into Go struct field Config.SubnetLen of type uint',
  },
  {
    json: '{"Network":"10.3.0.0/16","EnableIPv6":"true"}',
    flanneld:
      'error: json: cannot unmarshal string into Go struct field Config.EnableIPv6 of type bool',
  },
  { json: '{"SubnetLen":"x","Network":"nope"}', flanneld: 'error: invalid CIDR address: nope' },
  { json: '{"Network":"10.3.0.0/33"}', flanneld: 'error: invalid CIDR address: 10.3.0.0/33' },
  {
    json: '{"Network":"10.3.0.0/16","SubnetLen":1e1}',
    flanneld:
      'error: json: cannot unmarshal number 1e1 into Go struct field Config.SubnetLen of type uint',
  },
  {
    json: '{"Network":"10.3.0.0/16","Backend":{"Type":1}}',
    flanneld:
      'error: error decoding Backend property of config: json: cannot unmarshal number into Go struct field .Type of type string',
    backend: true,
  },
  {
    json: '{"Network":"10.3.0.0/16","Backend":{"type":"alloc","Type":"host-gw"}}',
    flanneld: 'type: host-gw',
    backend: true,
  },
  // Backend
  { json: '{"Network":"10.3.0.0/16"}', flanneld: 'type: udp', backend: true },
  {
    json: '{"Network":"10.3.0.0/16","Backend":{}}',
    flanneld: 'error: unknown backend type: ',
    backend: true,
  },
  {
    json: '{"Network":"10.3.0.0/16","Backend":{"Type":"VXLAN"}}',
    flanneld: 'type: vxlan',
    backend: true,
  },
  {
    json: '{"Network":"10.3.0.0/16","backend":{"type":"Host-GW"}}',
    flanneld: 'type: host-gw',
    backend: true,
  },
  {
    json: '{"Network":"10.3.0.0/16","Backend":"vxlan"}',
    flanneld:
      'error: error decoding Backend property of config: json: cannot unmarshal string into Go value of type struct { Type string }',
    backend: true,
  },
  // IPv6
  { json: `{${V6},"IPv6Network":"fc00::/48"}`, flanneld: 'v6 64 fc00:0:0:1:: fc00:0:0:ffff::' },
  { json: `{${V6},"IPv6Network":"fc00::/62"}`, flanneld: 'v6 64 fc00:0:0:1:: fc00:0:0:3::' },
  {
    json: `{${V6},"IPv6Network":"fc00::/63"}`,
    flanneld: 'v6 65 fc00::8000:0:0:0 fc00:0:0:1:8000::',
  },
  { json: `{${V6},"IPv6Network":"fc00::/124"}`, flanneld: 'v6 126 fc00::4 fc00::c' },
  {
    json: `{${V6},"IPv6Network":"fc00::/125"}`,
    flanneld: 'error: IPv6Network is too small. Minimum useful network prefix is /124',
  },
  { json: '{"EnableIPv4":false,"Network":"10.3.0.0/16"}', flanneld: 'error: none defined stack' },
  // nesting: Go's scanner reads 10000 levels in all (the outer object counts) and refuses 10001
  {
    json: `{"Network":"10.3.0.0/16","X":${'['.repeat(9999)}${']'.repeat(9999)}}`,
    flanneld: '24 10.3.1.0 10.3.255.0',
  },
  {
    json: `{"Network":"10.3.0.0/16","X":${'['.repeat(10_000)}${']'.repeat(10_000)}}`,
    flanneld: "error: invalid character '[' exceeded max depth",
  },
]

/** A row's JSON as a test title (the deep-nesting rows shortened). */
function title(json: string): string {
  return json.length <= 200 ? json : `${json.slice(0, 40)}... (${json.length} characters)`
}

/**
 * Rows whose input and answer config.test.ts already asserts; the always-on
 * suite below leaves them out (the real-flanneld suite runs every row).
 */
const IN_CONFIG_TEST = new Set<string>([
  '{"Network":"10.0.0.0/8"}',
  '{"Network":"10.3.0.0/16"}',
  '{"Network":"10.1.0.0/22"}',
  '{"Network":"10.1.0.0/23"}',
  '{"Network":"10.1.0.0/24"}',
  '{"Network":"10.1.0.0/28"}',
  '{"Network":"10.1.0.0/29"}',
  '{"Network":"10.3.0.0/16","SubnetLen":17}',
  '{"Network":"10.3.0.0/16","SubnetLen":30}',
  '{"Network":"10.3.0.0/16","SubnetLen":31}',
  '{"Network":"10.3.0.0/16","SubnetMin":"10.3.5.0","SubnetMax":"10.3.8.0","SubnetLen":28}',
  '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1.5"}',
  '{"Network":"10.3.0.0/16","SubnetMax":"10.3.200.1"}',
  '{"Network":"10.3.0.0/16","SubnetMin":"10.4.1.0"}',
  '{"Network":"10.3.0.0/16","SubnetMax":"10.2.0.0"}',
  '{"network":"10.3.0.7/16","subnetlen":20}',
  '{"nEtWoRk":"10.3.0.0/16","subnetMIN":"10.3.7.0"}',
  '{}',
  '{"Network":"0.0.0.0/0"}',
  '{"Network":"10.3.0.0/16","SubnetLen":"24"}',
  '{"Network":"10.3.0.0/16","SubnetLen":-1}',
  '{"Network":"10.3.0.0"}',
  '{"Network":"10.3.0.0/16","SubnetMin":"10.3.1"}',
  '{"network":"10.1.0.0/16","Network":"10.2.0.0/16"}',
  '{"Network":"10.3.0.0/16","EnableIPv4":null}',
  '{"Network":"10.3.0.0/16","SubnetMin":"0.0.0.0"}',
  '{"Network":"10.3.0.0/16","SubnetLen":24.0}',
  '{"Network":"10.3.0.0/16","EnableIPv6":"true"}',
  '{"SubnetLen":"x","Network":"nope"}',
  '{"Network":"10.3.0.0/33"}',
])

function withAlloc(row: Row): string {
  if (row.backend) return row.json
  return row.json.replace(
    /\}\s*$/,
    (row.json.trim() === '{}' ? '' : ',') + '"Backend":{"Type":"alloc"}}',
  )
}

/** The backend types this check knows; any other type fails the lookup as in flanneld. */
const KNOWN_BACKENDS: BackendFactory[] = ['udp', 'vxlan', 'host-gw', 'alloc'].map((name) =>
  defineBackend(name, () => {
    throw new Error('not constructed in this test')
  }),
)

/** What our parser (and backend lookup) makes of a row, in the words of the recorded answer. */
async function ours(row: Row): Promise<string> {
  try {
    const c = parseNetworkConfig(withAlloc(row))
    if (row.backend) {
      lookupBackend(c.backendType, KNOWN_BACKENDS)
      return `type: ${c.backendType}`
    }
    if (c.enableIPv6) {
      return `v6 ${c.ipv6SubnetLen} ${c.ipv6SubnetMin?.address} ${c.ipv6SubnetMax?.address}`
    }
    return `${c.subnetLen} ${c.subnetMin?.address} ${c.subnetMax?.address}`
  } catch (err) {
    if (err instanceof ConfigError || err instanceof UnknownBackendError) {
      return `error: ${err.message}`
    }
    throw err
  }
}

describe('config matrix: our parser gives flanneld v0.28.10 answers (recorded rows not already in config.test.ts)', () => {
  const rows = MATRIX.filter((row) => row.backend || !IN_CONFIG_TEST.has(row.json))
  it.each(rows.map((row) => [title(row.json), row] as const))('%s', async (_json, row) => {
    expect(await ours(row)).toBe(row.flanneld)
  })
})

const skipReason = interopSkipReason()
if (skipReason) console.warn(`interop-config: real flanneld checks skipped: ${skipReason}`)

describe.skipIf(skipReason !== undefined)(
  `config matrix: real flanneld${skipReason ? ` (skipped: ${skipReason})` : ''}`,
  () => {
    let etcd: InteropEtcd
    let client: ReturnType<InteropEtcd['connect']>
    let ns: Netns
    let dir: string
    const prefix = runPrefix()
    const seen = new Map<number, string>()

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'fl-interop-config-'))
      etcd = await startInteropEtcd()
      client = etcd.connect()
      ns = await Netns.create(`${prefix}-cfg`)
      await ns.addBridge(`${prefix}b0`, '192.0.2.11/24')
      await ns.ip('addr', 'add', '2001:db8::11/64', 'dev', `${prefix}b0`, 'nodad')
      // Every row at once, each under its own etcd prefix (alloc needs no kernel state).
      await Promise.all(
        MATRIX.map(async (row, i) => {
          await client.put(`/m${i}/config`).value(withAlloc(row))
          seen.set(i, await observe(i, row))
        }),
      )
    }, 120_000)

    afterAll(async () => {
      await ns?.destroy()
      await etcd?.stop()
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    /** Runs flanneld for one row until it shows its answer, then stops it. */
    async function observe(i: number, row: Row): Promise<string> {
      const f = Flanneld.start({
        netns: ns,
        etcdEndpoint: etcd.socketEndpoint,
        etcdPrefix: `/m${i}`,
        iface: `${prefix}b0`,
        subnetFile: join(dir, `subnet-${i}.env`),
        extraArgs: ['--iptables-forward-rules=false'],
      })
      try {
        const first = await f.waitForLog(
          /Couldn't fetch network config: (.*)$|Found network config - Backend type: (.*)$/m,
          20_000,
        )
        if (first[1] !== undefined) return `error: ${first[1]}`
        if (row.backend) {
          // The log line shows Type as written; the effective type shows in what the backend does.
          const done = await f.waitForLog(/Error fetching backend: (.*)$|Wrote subnet file to /m)
          if (done[1] !== undefined) return `error: ${done[1]}`
          const kv = await client.getAll().prefix(`/m${i}/subnets/`).strings()
          const attrs = JSON.parse(Object.values(kv)[0] ?? '{}') as { BackendType?: string }
          if (attrs.BackendType !== undefined) return `type: ${attrs.BackendType}`
          const tun = await ns.ip('-o', 'link', 'show', 'flannel0').catch(() => '')
          return tun.includes('flannel0') ? 'type: udp' : 'type: (no BackendType, no flannel0)'
        }
        const v6 = withAlloc(row).includes('"EnableIPv6":true')
        const next = await f.waitForLog(
          new RegExp(`${(v6 ? PICKING_RANGE6 : PICKING_RANGE).source}|none defined stack`),
        )
        if (next[0] === 'none defined stack') return 'error: none defined stack'
        const lease = await f.waitForLog(ALLOCATED)
        const len = (v6 ? lease[2] : lease[1])?.split('/')[1]
        return `${v6 ? 'v6 ' : ''}${len} ${next[1]} ${next[2]}`
      } catch (err) {
        return `failed: ${(err as Error).message}`
      } finally {
        await f.stop()
      }
    }

    it.each(MATRIX.map((row, i) => [title(row.json), i, row] as const))(
      '%s',
      async (_json, i, row) => {
        expect(seen.get(i)).toBe(row.flanneld)
        expect(await ours(row)).toBe(seen.get(i))
      },
    )
  },
)
