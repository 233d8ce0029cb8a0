import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

describe('examples/memory-agent.ts', () => {
  it("runs the README's agent in one process: two hosts on a MemoryRegistry route each other's subnet", async () => {
    const { stdout } = await runExample('memory-agent.ts')
    const leases = [...stdout.matchAll(/host (\d): lease (10\.5\.\d+\.0\/24), MTU 1450/g)].map(
      (m) => m[2]!,
    )
    expect(leases).toHaveLength(2)
    expect(leases[0]).not.toBe(leases[1])
    // each host routes the other's subnet, via its network address, on flannel.1
    for (const [host, other] of [
      ['1', leases[1]!],
      ['2', leases[0]!],
    ] as const) {
      const gw = other.split('/')[0]!
      expect(stdout).toContain(`host ${host}: route ${other} via ${gw} dev flannel.1 onlink`)
    }
  })
})
