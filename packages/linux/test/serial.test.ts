import { describe, expect, it } from 'vitest'
import { SerialQueue, withRetry } from '../src/backend/index.js'

describe('SerialQueue', () => {
  it('runs jobs in the order they were queued, one at a time', async () => {
    const queue = new SerialQueue()
    const log: string[] = []
    const job = (name: string, ticks: number) => async () => {
      log.push(`start ${name}`)
      for (let i = 0; i < ticks; i++) await Promise.resolve()
      log.push(`end ${name}`)
      return name
    }
    const results = await Promise.all([
      queue.run(job('a', 5)),
      queue.run(job('b', 0)),
      queue.run(job('c', 2)),
    ])
    expect(results).toEqual(['a', 'b', 'c'])
    expect(log).toEqual(['start a', 'end a', 'start b', 'end b', 'start c', 'end c'])
  })

  it('keeps running after a job fails, and the failure reaches its caller', async () => {
    const queue = new SerialQueue()
    const failed = queue.run(async () => {
      throw new Error('boom')
    })
    const next = queue.run(async () => 'after')
    await expect(failed).rejects.toThrow('boom')
    await expect(next).resolves.toBe('after')
  })
})

describe('withRetry', () => {
  it('retries until the call succeeds', async () => {
    let calls = 0
    const value = await withRetry(
      async () => {
        calls++
        if (calls < 3) throw new Error(`try ${calls}`)
        return 'ok'
      },
      5,
      1,
      () => false,
    )
    expect(value).toBe('ok')
    expect(calls).toBe(3)
  })

  it('rethrows the last error after the given number of attempts', async () => {
    let calls = 0
    const run = withRetry(
      async () => {
        calls++
        throw new Error(`try ${calls}`)
      },
      3,
      1,
      () => false,
    )
    await expect(run).rejects.toThrow('try 3')
    expect(calls).toBe(3)
  })

  it('stops retrying once stopped() is true', async () => {
    let calls = 0
    let stopped = false
    const run = withRetry(
      async () => {
        calls++
        stopped = true
        throw new Error(`try ${calls}`)
      },
      10,
      1,
      () => stopped,
    )
    await expect(run).rejects.toThrow('try 1')
    expect(calls).toBe(1)
  })

  it('reports each retry to onRetry and stops at once on an error retryable() refuses', async () => {
    const retries: [string, number][] = []
    let calls = 0
    const run = withRetry(
      async () => {
        calls++
        throw new Error(calls < 3 ? 'busy' : 'missing')
      },
      10,
      1,
      () => false,
      {
        retryable: (error) => (error as Error).message === 'busy',
        onRetry: (error, attempt, waitMs) => {
          expect(waitMs).toBeGreaterThan(0)
          retries.push([(error as Error).message, attempt])
        },
      },
    )
    await expect(run).rejects.toThrow('missing')
    expect(calls).toBe(3)
    expect(retries).toEqual([
      ['busy', 1],
      ['busy', 2],
    ])
  })
})
