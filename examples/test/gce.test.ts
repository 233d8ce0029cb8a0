import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { describe, expect, it } from 'vitest'
import { runExample } from './run-example.js'

describe('examples/gce.ts', () => {
  it('inserts the lease route through the local Compute endpoint', async () => {
    // An empty HOME: no gcloud credentials of the machine are picked up.
    const home = mkdtempSync(join(tmpdir(), 'flgce-'))
    try {
      const env: NodeJS.ProcessEnv = { ...process.env, HOME: home, GCE_REAL: '' }
      delete env.GOOGLE_APPLICATION_CREDENTIALS
      const { stdout } = await runExample('gce.ts', { env })
      expect(stdout).toContain('lease 10.5.34.0/24, MTU 1460')
      expect(stdout).toMatch(
        /flannel-10-5-34-0-24: 10\.5\.34\.0\/24 -> https:\/\/www\.googleapis\.com\/compute\/v1\/projects\/flannel-test\/zones\/us-central1-b\/instances\/node-1 \(priority 1000\)/,
      )
    } finally {
      rmSync(home, { recursive: true, force: true })
    }
  })
})
