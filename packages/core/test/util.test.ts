import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AbortError } from '@flannel/core'
import { sleep } from '@flannel/core/registry'

describe('sleep', () => {
  beforeEach(() => {
    vi.useFakeTimers()
  })
  afterEach(() => {
    vi.useRealTimers()
  })

  it('resolves once the time has passed and not before', async () => {
    let done = false
    const p = sleep(100).then(() => {
      done = true
    })
    await vi.advanceTimersByTimeAsync(99)
    expect(done).toBe(false)
    await vi.advanceTimersByTimeAsync(1)
    await p
    expect(done).toBe(true)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('rejects with AbortError on abort and leaves no timer behind', async () => {
    const ac = new AbortController()
    const p = sleep(10_000, ac.signal)
    expect(vi.getTimerCount()).toBe(1)
    const reason = new Error('stop')
    ac.abort(reason)
    const err = await p.catch((e: unknown) => e)
    expect(err).toBeInstanceOf(AbortError)
    expect((err as AbortError).cause).toBe(reason)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('rejects at once without scheduling when the signal is already aborted', async () => {
    const ac = new AbortController()
    ac.abort()
    await expect(sleep(10_000, ac.signal)).rejects.toBeInstanceOf(AbortError)
    expect(vi.getTimerCount()).toBe(0)
  })

  it('does not reject on a later abort once it has resolved', async () => {
    const ac = new AbortController()
    const p = sleep(5, ac.signal)
    await vi.advanceTimersByTimeAsync(5)
    await expect(p).resolves.toBeUndefined()
    ac.abort()
    expect(vi.getTimerCount()).toBe(0)
  })
})
