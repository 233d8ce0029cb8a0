import { describe, expect, it } from 'vitest'
import { parseNetworkConfig, silentLogger, type LeaseEvent } from '@flannel/core'
import { BatchRecorder } from '@flannel/testkit/conformance'
import { annotationKeys, type NodeObject } from '@flannel/registry-kube'
import type { WatchEnd } from '../src/client.js'
import {
  watchNodeLeases,
  type NodeListing,
  type NodeSource,
  type NodeWatchEvent,
} from '../src/watch.js'

// The watch loop on a scripted node source: what it emits for a listing,
// for watch events, and after each way a watch can end.

const P = 'flannel.alpha.coreos.com/'
const config = parseNetworkConfig('{"Network":"10.244.0.0/16","Backend":{"Type":"vxlan"}}', {
  check: false,
})

function node(name: string, n: number, mac = '0a:58:0a:f4:01:00', rv = '1'): NodeObject {
  return {
    metadata: {
      name,
      resourceVersion: rv,
      annotations: {
        [`${P}kube-subnet-manager`]: 'true',
        [`${P}backend-type`]: 'vxlan',
        [`${P}backend-data`]: `{"VNI":1,"VtepMAC":"${mac}"}`,
        [`${P}public-ip`]: `192.0.2.${n}`,
      },
    },
    spec: { podCIDR: `10.244.${n}.0/24` },
  }
}

/** A node source whose listings and watch streams the test hands out one by one. */
class ScriptedSource implements NodeSource {
  readonly listings: NodeListing[] = []
  readonly watchFrom: string[] = []
  lists = 0
  aborted = 0
  private ends: ((end: WatchEnd) => void)[] = []
  private emitters: ((e: NodeWatchEvent) => void)[] = []

  config = async () => config
  async list(): Promise<NodeListing> {
    this.lists++
    const next = this.listings.shift()
    if (next === undefined) throw new Error('no listing scripted')
    return next
  }
  watch(rv: string, onEvent: (e: NodeWatchEvent) => void, signal: AbortSignal): Promise<WatchEnd> {
    this.watchFrom.push(rv)
    return new Promise((resolve) => {
      let open = true
      const end = (e: WatchEnd): void => {
        if (e.kind === 'aborted' && open) this.aborted++
        open = false
        resolve(e)
      }
      signal.addEventListener('abort', () => end({ kind: 'aborted' }), { once: true })
      this.ends.push(end)
      this.emitters.push(onEvent)
    })
  }
  get watching(): number {
    return this.ends.length
  }
  event(type: string, object: unknown): void {
    this.emitters.at(-1)!({ type, object })
  }
  end(end: WatchEnd): void {
    this.ends.at(-1)!(end)
  }
}

async function started(source: ScriptedSource): Promise<BatchRecorder> {
  const rec = new BatchRecorder(
    watchNodeLeases(source, {
      keys: annotationKeys(),
      logger: silentLogger,
      random: () => 0,
      closed: new AbortController().signal,
    }),
  )
  await rec.until('the snapshot', () => rec.batches.length === 1)
  return rec
}

const summary = (batch: LeaseEvent[]): string[] =>
  batch.map(
    (e) =>
      `${e.type} ${e.lease.subnet.toString()} ${String((e.lease.attrs.backendData as { VtepMAC: string }).VtepMAC)}`,
  )

describe('watchNodeLeases on a scripted source', () => {
  it('snapshot of flannel nodes only; events become batches; heartbeats that change no lease emit nothing', async () => {
    const source = new ScriptedSource()
    const plain: NodeObject = {
      metadata: { name: 'kubelet-only', resourceVersion: '1' },
      spec: { podCIDR: '10.244.9.0/24' },
    }
    source.listings.push({ items: [node('a', 1), plain], resourceVersion: '10' })
    const rec = await started(source)
    try {
      expect(summary(rec.batches[0]!)).toEqual(['added 10.244.1.0/24 0a:58:0a:f4:01:00'])
      await rec.until('the watch', () => source.watching === 1)
      expect(source.watchFrom).toEqual(['10'])
      source.event('MODIFIED', node('a', 1, '0a:58:0a:f4:01:00', '11')) // e.g. a status heartbeat
      source.event('ADDED', node('b', 2, '0a:58:0a:f4:02:00', '12'))
      source.event('MODIFIED', node('a', 1, '0a:58:0a:f4:01:99', '13'))
      source.event('DELETED', node('b', 2, '0a:58:0a:f4:02:00', '14'))
      await rec.until('three batches', () => rec.batches.length === 4)
      expect(rec.batches.slice(1).map(summary)).toEqual([
        ['added 10.244.2.0/24 0a:58:0a:f4:02:00'],
        ['added 10.244.1.0/24 0a:58:0a:f4:01:99'],
        ['removed 10.244.2.0/24 0a:58:0a:f4:02:00'],
      ])
    } finally {
      rec.unsubscribe()
    }
  })

  it('a removed marker removes the lease; a changed podCIDR is removed + added', async () => {
    const source = new ScriptedSource()
    source.listings.push({ items: [node('a', 1), node('b', 2)], resourceVersion: '10' })
    const rec = await started(source)
    try {
      await rec.until('the watch', () => source.watching === 1)
      const unmarked = node('a', 1, undefined, '11')
      const annotations = {
        ...unmarked.metadata!.annotations!,
        [`${P}kube-subnet-manager`]: 'false',
      }
      source.event('MODIFIED', { ...unmarked, metadata: { ...unmarked.metadata, annotations } })
      const moved = node('b', 2, '0a:58:0a:f4:01:00', '12')
      source.event('MODIFIED', { ...moved, spec: { podCIDR: '10.244.7.0/24' } })
      await rec.until('two batches', () => rec.batches.length === 3)
      expect(summary(rec.batches[1]!)).toEqual(['removed 10.244.1.0/24 0a:58:0a:f4:01:00'])
      expect(summary(rec.batches[2]!)).toEqual([
        'removed 10.244.2.0/24 0a:58:0a:f4:01:00',
        'added 10.244.7.0/24 0a:58:0a:f4:01:00',
      ])
    } finally {
      rec.unsubscribe()
    }
  })

  it('a normal end resumes from the last resourceVersion (bookmarks included) without a re-list', async () => {
    const source = new ScriptedSource()
    source.listings.push({ items: [node('a', 1)], resourceVersion: '10' })
    const rec = await started(source)
    try {
      await rec.until('the watch', () => source.watching === 1)
      source.event('BOOKMARK', { metadata: { resourceVersion: '25' } })
      source.end({ kind: 'closed' })
      await rec.until('the second watch', () => source.watching === 2)
      expect(source.watchFrom).toEqual(['10', '25'])
      expect(source.lists).toBe(1)
      expect(rec.batches).toHaveLength(1)
    } finally {
      rec.unsubscribe()
    }
  })

  it.each([
    ['a 410 Gone', { kind: 'gone', message: 'too old resource version' } as WatchEnd],
    ['a dropped connection', { kind: 'failed', error: new Error('ECONNRESET') } as WatchEnd],
  ])('after %s it re-lists and emits only the difference', async (_what, end) => {
    const source = new ScriptedSource()
    source.listings.push({
      items: [node('a', 1), node('b', 2), node('c', 3)],
      resourceVersion: '10',
    })
    // Meanwhile: b deleted, c changed, d added, a unchanged (a newer resourceVersion only).
    source.listings.push({
      items: [
        node('a', 1, '0a:58:0a:f4:01:00', '40'),
        node('c', 3, '0a:58:0a:f4:03:33', '41'),
        node('d', 4),
      ],
      resourceVersion: '42',
    })
    const rec = await started(source)
    try {
      await rec.until('the watch', () => source.watching === 1)
      source.end(end)
      await rec.until('the resync batch', () => rec.batches.length === 2)
      expect(summary(rec.batches[1]!).sort()).toEqual([
        'added 10.244.3.0/24 0a:58:0a:f4:03:33',
        'added 10.244.4.0/24 0a:58:0a:f4:01:00',
        'removed 10.244.2.0/24 0a:58:0a:f4:01:00',
      ])
      await rec.until('the watch from the new listing', () => source.watching === 2)
      expect(source.watchFrom).toEqual(['10', '42'])
    } finally {
      rec.unsubscribe()
    }
  })

  it('a re-list that finds no change emits nothing; unsubscribing aborts the watch', async () => {
    const source = new ScriptedSource()
    source.listings.push({ items: [node('a', 1)], resourceVersion: '10' })
    source.listings.push({
      items: [node('a', 1, '0a:58:0a:f4:01:00', '50')],
      resourceVersion: '50',
    })
    const rec = await started(source)
    await rec.until('the watch', () => source.watching === 1)
    source.end({ kind: 'gone', message: 'expired' })
    await rec.until('the watch after the re-list', () => source.watching === 2)
    expect(rec.batches).toHaveLength(1)
    expect(source.aborted).toBe(0)
    rec.unsubscribe()
    expect(source.aborted).toBe(1)
    expect(source.lists).toBe(2)
  })
})
