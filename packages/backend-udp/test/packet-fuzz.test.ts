/**
 * The datapath's packet code (header parsing, ICMP replies, TSO segmenting,
 * receive coalescing) under AddressSanitizer and UBSan, fed a corpus of
 * well-formed and malformed IPv4/TCP/UDP packets generated from a seed
 * (printed; FLANNEL_FUZZ_SEED=<n> reproduces a run, FLANNEL_FUZZ_RUNS=<n>
 * sets its size). The harness (native/harness.c) checks what the code
 * promises about its output; this file checks the decisions (what parses,
 * what is segmented into how many packets, what is merged) against the
 * corpus's construction.
 */
import { spawn } from 'node:child_process'
import { mkdtemp, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import fc from 'fast-check'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { fixIp4Checksum, tcp4, udp4, type Tcp4Spec } from './helpers/ipv4.js'
import {
  SANITIZER_ENV,
  SANITIZER_REPORT,
  buildHarness,
  sanitizersUnavailable,
} from './helpers/sanitizer.js'

const unavailable = await sanitizersUnavailable()
if (unavailable) console.warn(`udp packet sanitizer tests skipped: ${unavailable}`)

const SEED = process.env.FLANNEL_FUZZ_SEED
  ? Number(process.env.FLANNEL_FUZZ_SEED)
  : Math.floor(Math.random() * 0x7fffffff)
const RUNS = Number(process.env.FLANNEL_FUZZ_RUNS ?? 3000)

/** ip4_parse's answers (native/packet.h). */
const IP4 = { ok: 0, short: 1, notV4: 2, badIhl: 3, badTotalLength: 4 } as const
/** tso_begin's answers (native/tcpseg.h). */
const TSO = { malformed: -1, send: 0, segment: 1 } as const

/** One harness record; `expect` lists the output line's fields after the op (undefined: any). */
interface Rec {
  readonly op: 'P' | 'T' | 'G'
  readonly cls: string
  readonly body: Buffer
  readonly expect?: readonly (number | string | undefined)[]
}

// ---- packets ----

/** Deterministic filler bytes (xorshift32) so that big payloads cost no generator work. */
function bytes(seed: number, n: number): Buffer {
  const b = Buffer.alloc(n)
  let x = seed | 1
  for (let i = 0; i < n; i++) {
    x ^= x << 13
    x ^= x >>> 17
    x ^= x << 5
    b[i] = x & 0xff
  }
  return b
}

const SRC = '10.5.3.7'
const DST = '10.5.1.1'

const tcpFields = fc.record({
  sport: fc.integer({ min: 1, max: 65535 }),
  seq: fc.nat(),
  ack: fc.nat(),
  window: fc.integer({ min: 0, max: 65535 }),
  ttl: fc.integer({ min: 2, max: 255 }),
  tos: fc.integer({ min: 0, max: 255 }),
  id: fc.integer({ min: 0, max: 65535 }),
  df: fc.boolean(),
  optWords: fc.oneof(fc.constant(0), fc.constant(3), fc.integer({ min: 0, max: 10 })),
  fill: fc.integer(),
})
type TcpFields = typeof tcpFields extends fc.Arbitrary<infer T> ? T : never

function segment(f: TcpFields, extra: Partial<Tcp4Spec> & { payloadLen: number }): Buffer {
  const { payloadLen, ...rest } = extra
  return tcp4({
    src: SRC,
    dst: DST,
    sport: f.sport,
    seq: f.seq,
    ack: f.ack,
    window: f.window,
    ttl: f.ttl,
    tos: f.tos,
    id: f.id,
    df: f.df,
    options: Buffer.alloc(f.optWords * 4, 1), // NOPs
    payload: bytes(f.fill + f.seq, payloadLen),
    ...rest,
  })
}

/** A change that makes a TCP/IPv4 packet malformed, and what ip4_parse then answers. */
const mutation = fc.record({
  cls: fc.constantFrom(
    'truncated',
    'bad-ihl',
    'bad-data-offset',
    'fragment',
    'bad-total-length',
    'not-v4',
  ),
  n: fc.nat(),
  m: fc.nat(),
})
type Mutation = typeof mutation extends fc.Arbitrary<infer T> ? T : never

/** Applies `mut` to a copy of a well-formed packet; returns it with ip4_parse's expected fields. */
function mutate(good: Buffer, mut: Mutation): { pkt: Buffer; parse: (number | undefined)[] } {
  const p = Buffer.from(good)
  const len = p.length
  const ihl = (p[0]! & 0x0f) * 4
  switch (mut.cls) {
    case 'truncated': {
      const cut = mut.n % len
      const rc = cut < 20 ? IP4.short : cut < ihl ? IP4.badIhl : IP4.badTotalLength
      return { pkt: p.subarray(0, cut), parse: [rc] }
    }
    case 'bad-ihl': {
      // below 5 words, or longer than the bytes there
      const beyond = Math.floor(len / 4) + 1
      const choices = [0, 1, 2, 3, 4, ...(beyond <= 15 ? [beyond, 15] : [])]
      p[0] = 0x40 | choices[mut.n % choices.length]!
      return { pkt: fixIp4Checksum(p), parse: [IP4.badIhl] }
    }
    case 'bad-data-offset': {
      // below 5 words, or a TCP header longer than the packet
      const room = len - ihl
      const choices = [0, 1, 2, 3, 4]
      for (let d = 5; d <= 15; d++) if (d * 4 > room) choices.push(d)
      p[ihl + 12] = (choices[mut.n % choices.length]! << 4) | (p[ihl + 12]! & 0x0f)
      return { pkt: p, parse: [IP4.ok, ihl, len, 6, 0, 0, 0] }
    }
    case 'fragment': {
      const more = mut.m % 2 === 1
      const offset = more ? mut.n % 8192 : 1 + (mut.n % 8191)
      p.writeUInt16BE((p.readUInt16BE(6) & 0x4000) | (more ? 0x2000 : 0) | offset, 6)
      return { pkt: fixIp4Checksum(p), parse: [IP4.ok, ihl, len, 6, 1, 0, 0] }
    }
    case 'bad-total-length': {
      const kind = mut.m % 3
      let tot: number
      let rc: number
      if (kind === 0 || len >= 65535) {
        tot = mut.n % ihl // below the header
        rc = IP4.badTotalLength
      } else if (kind === 1) {
        tot = len + 1 + (mut.n % (65535 - len)) // above the bytes there
        rc = IP4.badTotalLength
      } else {
        tot = ihl + (mut.n % (len - ihl)) // shorter than the datagram: padding
        rc = IP4.ok
      }
      p.writeUInt16BE(tot, 2)
      return { pkt: fixIp4Checksum(p), parse: rc === IP4.ok ? [rc, ihl, tot] : [rc] }
    }
    case 'not-v4': {
      const v = [0, 1, 2, 3, 5, 6, 7, 15][mut.n % 8]!
      p[0] = (v << 4) | (p[0]! & 0x0f)
      return { pkt: p, parse: [IP4.notV4] }
    }
  }
  throw new Error(`unknown mutation ${mut.cls}`)
}

// ---- records ----

function record(op: Rec['op'], cls: string, body: Buffer, expect?: Rec['expect']): Rec {
  return expect ? { op, cls, body, expect } : { op, cls, body }
}

function u16(n: number): Buffer {
  const b = Buffer.alloc(2)
  b.writeUInt16LE(n)
  return b
}

/** virtio_net_hdr: flags, gso_type, hdr_len, gso_size, csum_start, csum_offset. */
function vnet(
  flags: number,
  gsoType: number,
  hdrLen: number,
  gsoSize: number,
  start: number,
  offset: number,
): Buffer {
  const b = Buffer.alloc(10)
  b[0] = flags
  b[1] = gsoType
  b.writeUInt16LE(hdrLen & 0xffff, 2)
  b.writeUInt16LE(gsoSize & 0xffff, 4)
  b.writeUInt16LE(start & 0xffff, 6)
  b.writeUInt16LE(offset & 0xffff, 8)
  return b
}

const tRecord = (cls: string, mtu: number, v: Buffer, pkt: Buffer, expect?: Rec['expect']): Rec =>
  record('T', cls, Buffer.concat([u16(mtu), v, pkt]), expect)

const gRecord = (cls: string, pkts: Buffer[], expect?: Rec['expect']): Rec =>
  record('G', cls, Buffer.concat(pkts.flatMap((p) => [u16(p.length), p])), expect)

/** The coalescer's expected output for a run of k mergeable segments in which segment j (if any) is not. */
function runsAround(k: number, j: number | undefined): (number | string)[] {
  const runs = j === undefined ? [k] : [j, 1, k - j - 1].filter((n) => n > 0)
  return [runs.length, runs.join(',')]
}

const parseRecord = fc.oneof(
  tcpFields.chain((f) =>
    fc
      .record({ ipOptWords: fc.integer({ min: 0, max: 10 }), payloadLen: fc.nat(1460) })
      .map(({ ipOptWords, payloadLen }) => {
        const pkt = segment(f, { payloadLen, ipOptions: Buffer.alloc(ipOptWords * 4, 1) })
        const ihl = 20 + ipOptWords * 4
        return record('P', 'tcp', pkt, [IP4.ok, ihl, pkt.length, 6, 0, 1, 20 + f.optWords * 4])
      }),
  ),
  fc
    .tuple(tcpFields, fc.nat(1460), fc.integer({ min: 0, max: 3 }), mutation)
    .map(([f, payloadLen, ipOptWords, mut]) => {
      const good = segment(f, { payloadLen, ipOptions: Buffer.alloc(ipOptWords * 4, 1) })
      const { pkt, parse } = mutate(good, mut)
      return record('P', mut.cls, pkt, parse)
    }),
  fc
    .tuple(fc.nat(600), fc.integer({ min: 0, max: 0xffff }), fc.integer())
    .map(([n, udpLength, fill]) => {
      const pkt = udp4(SRC, DST, bytes(fill, n), udpLength)
      return record('P', 'udp-length', pkt, [IP4.ok, 20, pkt.length, 17, 0, 0, 0])
    }),
  fc.uint8Array({ maxLength: 80 }).map((b) => record('P', 'random', Buffer.from(b))),
)

const TCPV4 = 1
const NEEDS_CSUM = 1

const tsoRecord = fc.oneof(
  // super-packets as the kernel hands them over, and cut into mss-sized segments
  fc
    .record({
      f: tcpFields,
      ipOptWords: fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 10 })),
      payloadLen: fc.oneof(fc.nat(3000), fc.nat(20000)),
      mtu: fc.oneof(fc.constantFrom(1472, 1450, 8972), fc.integer({ min: 68, max: 9000 })),
      gso: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 9000 })),
      ecn: fc.boolean(),
    })
    .map(({ f, ipOptWords, payloadLen, mtu, gso, ecn }) => {
      const pkt = segment(f, { payloadLen, ipOptions: Buffer.alloc(ipOptWords * 4, 1) })
      const ihl = 20 + ipOptWords * 4
      const hlen = ihl + 20 + f.optWords * 4
      const v = vnet(NEEDS_CSUM, TCPV4 | (ecn ? 0x80 : 0), hlen, gso, ihl, 16)
      if (payloadLen === 0 || hlen >= mtu)
        return tRecord('tso-unsendable', mtu, v, pkt, [TSO.malformed, 0, 0])
      const mss = Math.min(gso || mtu - hlen, mtu - hlen)
      return tRecord('tso', mtu, v, pkt, [TSO.segment, Math.ceil(payloadLen / mss), payloadLen])
    }),
  // malformed super-packets are dropped, never cut
  fc
    .tuple(tcpFields, fc.nat(6000), fc.integer({ min: 0, max: 3 }), mutation, fc.nat(1400))
    .map(([f, payloadLen, ipOptWords, mut, gso]) => {
      const good = segment(f, { payloadLen, ipOptions: Buffer.alloc(ipOptWords * 4, 1) })
      const { pkt } = mutate(good, mut)
      return tRecord(`tso-${mut.cls}`, 1472, vnet(NEEDS_CSUM, TCPV4, 0, gso, 20, 16), pkt, [
        TSO.malformed,
        0,
        0,
      ])
    }),
  // single packets: a checksum to finish in range, out of range, none; unknown GSO types
  fc
    .record({
      f: tcpFields,
      payloadLen: fc.nat(1400),
      start: fc.integer({ min: 0, max: 0xffff }),
      offset: fc.integer({ min: 0, max: 0xffff }),
      csum: fc.boolean(),
      gsoType: fc.constantFrom(0, 0, 3, 4, 5),
    })
    .map(({ f, payloadLen, start, offset, csum, gsoType }) => {
      const pkt = segment(f, { payloadLen })
      const inRange = start + offset + 2 <= pkt.length
      const rc = gsoType !== 0 ? TSO.malformed : !csum || inRange ? TSO.send : TSO.malformed
      return tRecord(
        'single',
        1472,
        vnet(csum ? NEEDS_CSUM : 0, gsoType, 0, 0, start, offset),
        pkt,
        [rc, 0, 0],
      )
    }),
  // anything at all
  fc
    .tuple(
      fc.integer({ min: 0, max: 9000 }),
      fc.uint8Array({ minLength: 10, maxLength: 10 }),
      fc.uint8Array({ maxLength: 200 }),
    )
    .map(([mtu, v, pkt]) => tRecord('tso-random', mtu, Buffer.from(v), Buffer.from(pkt))),
)

/** k continuing segments of one flow, each `pay` bytes but the last (`lastPay`). */
function flow(f: TcpFields, k: number, pay: number, lastPay: number, push: boolean): Buffer[] {
  const out: Buffer[] = []
  let seq = f.seq
  for (let i = 0; i < k; i++) {
    const last = i === k - 1
    const payloadLen = last ? lastPay : pay
    out.push(
      segment(f, {
        payloadLen,
        seq: seq >>> 0,
        id: (f.id + i) & 0xffff,
        flags: last && push ? 0x18 : 0x10,
      }),
    )
    seq += payloadLen
  }
  return out
}

const runShape = fc
  .record({
    f: tcpFields,
    k: fc.integer({ min: 2, max: 8 }),
    pay: fc.integer({ min: 1, max: 1460 }),
    lastFrac: fc.integer({ min: 1, max: 100 }),
    push: fc.boolean(),
  })
  .map(({ f, k, pay, lastFrac, push }) => ({
    f,
    k,
    segs: flow(f, k, pay, Math.max(1, Math.ceil((pay * lastFrac) / 100)), push),
  }))

const groRecord = fc.oneof(
  runShape.map(({ k, segs }) => gRecord('gro', segs, runsAround(k, undefined))),
  // one segment of the run malformed, or well-formed but not for merging
  fc
    .tuple(
      runShape,
      fc.nat(),
      fc.oneof(
        mutation.map((m) => ({ kind: 'mutation' as const, m })),
        fc.constantFrom(0x02, 0x12, 0x11, 0x04, 0x30, 0x08, 0x00, 0x90).map((flags) => ({
          kind: 'flags' as const,
          flags,
        })),
        fc.constant({ kind: 'ip-options' as const }),
      ),
    )
    .map(([{ f, k, segs }, jn, change]) => {
      const j = jn % k
      const s = segs[j]!
      let cls: string
      if (change.kind === 'mutation') {
        segs[j] = mutate(s, change.m).pkt
        cls = change.m.cls
      } else if (change.kind === 'flags') {
        segs[j] = Buffer.from(s)
        segs[j][33] = change.flags
        cls = `flags-${change.flags.toString(16)}`
      } else {
        segs[j] = segment(f, {
          payloadLen: s.length - 40 - f.optWords * 4,
          seq: s.readUInt32BE(24),
          id: s.readUInt16BE(4),
          flags: s[33]!,
          ipOptions: Buffer.alloc(4, 1),
        })
        cls = 'ip-options'
      }
      return gRecord(`gro-${cls}`, segs, runsAround(k, j))
    }),
  // mixed flows and garbage: only the harness's own checks apply
  fc
    .array(
      fc.oneof(
        runShape.map(({ segs }) => segs),
        fc.uint8Array({ maxLength: 100 }).map((b) => [Buffer.from(b)]),
        fc
          .tuple(tcpFields, fc.nat(200), mutation)
          .map(([f, n, m]) => [mutate(segment(f, { payloadLen: n }), m).pkt]),
      ),
      { maxLength: 5 },
    )
    .map((parts) => gRecord('gro-mixed', parts.flat())),
)

/** The issue's segments and their relatives, always in the corpus. */
function regressionRecords(): Rec[] {
  const out: Rec[] = []
  const payload = Buffer.alloc(100, 0x61)
  for (const doff of [0, 1, 2, 3, 4]) {
    // A pair whose second segment starts where the broken arithmetic expects it.
    const first = tcp4({ src: SRC, dst: DST, seq: 7000, payload })
    first[32] = doff << 4
    const second = tcp4({ src: SRC, dst: DST, seq: 7000 + first.length - 20 - doff * 4, payload })
    second[32] = doff << 4
    out.push(gRecord(`issue-12-data-offset-${doff}`, [first, second], [2, '1,1']))
    out.push(
      record('P', `issue-12-data-offset-${doff}`, first, [IP4.ok, 20, first.length, 6, 0, 0, 0]),
    )
  }
  // a well-formed segment followed by a short one with the same IP header
  for (const cut of [20, 32, 33, 39]) {
    const first = tcp4({ src: SRC, dst: DST, seq: 7000, payload })
    const second = tcp4({ src: SRC, dst: DST, seq: 7100, payload }).subarray(0, cut)
    out.push(gRecord(`short-after-good-${cut}`, [first, second], [2, '1,1']))
  }
  // super-packets whose TCP header is longer than the packet, or leaves no room for payload
  const sup = tcp4({ src: SRC, dst: DST, payload: Buffer.alloc(8) })
  const longHeader = Buffer.from(sup)
  longHeader[32] = 0xf0
  out.push(
    tRecord('tso-header-beyond-packet', 1472, vnet(NEEDS_CSUM, TCPV4, 0, 0, 20, 16), longHeader, [
      TSO.malformed,
      0,
      0,
    ]),
  )
  out.push(
    tRecord('tso-headers-fill-mtu', 40, vnet(NEEDS_CSUM, TCPV4, 0, 0, 20, 16), sup, [
      TSO.malformed,
      0,
      0,
    ]),
  )
  out.push(
    tRecord('tso-headers-beyond-mtu', 30, vnet(NEEDS_CSUM, TCPV4, 0, 0, 20, 16), sup, [
      TSO.malformed,
      0,
      0,
    ]),
  )
  return out
}

function encode(records: readonly Rec[]): Buffer {
  return Buffer.concat(
    records.flatMap((r) => {
      const head = Buffer.alloc(5)
      head[0] = r.op.charCodeAt(0)
      head.writeUInt32LE(r.body.length, 1)
      return [head, r.body]
    }),
  )
}

function runHarness(
  exe: string,
  corpus: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(exe, [corpus], { env: { ...process.env, ...SANITIZER_ENV } })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.once('error', reject)
    child.once('close', (code) => resolve({ code, stdout, stderr }))
  })
}

describe.skipIf(unavailable !== undefined)(
  `udp packet code under ASan/UBSan${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    let dir = ''
    let harness = ''

    beforeAll(async () => {
      dir = await mkdtemp(join(tmpdir(), 'flannel-udp-fuzz-'))
      harness = await buildHarness(dir)
    }, 120_000)

    afterAll(async () => {
      if (dir) await rm(dir, { recursive: true, force: true })
    })

    it('parses, segments and coalesces a seeded corpus of well-formed and malformed packets without a sanitizer report', async () => {
      console.log(
        `udp packet fuzz: seed=${SEED} runs=${RUNS} (FLANNEL_FUZZ_SEED=${SEED} reproduces)`,
      )
      const generated = fc.sample(fc.oneof(parseRecord, tsoRecord, groRecord), {
        seed: SEED,
        numRuns: RUNS,
      })
      const records = [...regressionRecords(), ...generated]
      const corpus = join(dir, 'corpus.bin')
      await writeFile(corpus, encode(records))
      const { code, stdout, stderr } = await runHarness(harness, corpus)
      const lines = stdout.split('\n').filter((l) => l !== '')
      const at = (i: number): string => {
        const r = records[i]
        return r
          ? `record ${i} (${r.op} ${r.cls}): ${r.body.toString('hex').slice(0, 240)}`
          : `record ${i}`
      }
      const context = `seed=${SEED}; ${lines.length} of ${records.length} records done`
      expect(stderr, `${context}; stopped at ${at(lines.length)}`).not.toMatch(SANITIZER_REPORT)
      expect(stderr, context).not.toMatch(/violation/)
      expect(code, `${context}\n${stderr}`).toBe(0)
      expect(lines).toHaveLength(records.length)
      const wrong: string[] = []
      records.forEach((r, i) => {
        if (!r.expect) return
        const fields = lines[i]!.split(' ')
        const ok =
          fields[0] === r.op &&
          r.expect.every((want, k) => want === undefined || String(want) === fields[k + 1])
        if (!ok) wrong.push(`${at(i)}\n    got "${lines[i]}", want ${JSON.stringify(r.expect)}`)
      })
      expect(wrong.slice(0, 10).join('\n'), `${context}; ${wrong.length} wrong`).toBe('')
      // every class of the corpus was there
      const classes = new Set(records.map((r) => r.cls))
      for (const cls of [
        'truncated',
        'bad-ihl',
        'bad-data-offset',
        'fragment',
        'bad-total-length',
        'udp-length',
        'gro',
        'tso',
      ])
        expect([...classes]).toContain(cls)
    }, 120_000)
  },
)
