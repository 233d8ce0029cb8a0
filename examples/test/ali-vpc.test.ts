import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

describe('examples/ali-vpc.ts', () => {
  it('creates the lease route entry through the local Alibaba emulator and waits for Available', async () => {
    // Credentials of the machine must not leak in: the example takes the emulator's.
    const env: NodeJS.ProcessEnv = { ...process.env, ALI_REAL: '' }
    delete env.ACCESS_KEY_ID
    delete env.ACCESS_KEY_SECRET
    const { stdout } = await runExample('ali-vpc.ts', { env })
    expect(stdout).toContain('lease 10.5.34.0/24, MTU 1500')
    expect(stdout).toMatch(/^Custom 10\.5\.34\.0\/24\s+-> i-\w+ \(Available\)$/m)
    // the emulator's system entries are listed and untouched
    expect(stdout).toMatch(/^System 192\.168\.0\.0\/16\s+-> local \(Available\)$/m)
  })
})
