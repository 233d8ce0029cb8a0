import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { describe, expect, it } from 'vitest'

const run = promisify(execFile)
const script = fileURLToPath(new URL('./fixtures/sdk-loaded.mts', import.meta.url))

// A fresh Node process, so no other test has loaded the SDK already.
async function probe(...args: string[]): Promise<{ loaded: boolean; exportsBackend: string }> {
  const { stdout } = await run(
    process.execPath,
    ['--conditions=@flannel/source', '--import', 'tsx', script, ...args],
    { cwd: fileURLToPath(new URL('..', import.meta.url)) },
  )
  return JSON.parse(stdout) as { loaded: boolean; exportsBackend: string }
}

describe('@google-cloud/compute is loaded lazily', () => {
  it('is not loaded by importing @flannel/backend-gce', async () => {
    expect(await probe()).toEqual({ loaded: false, exportsBackend: 'function' })
  })

  it('is seen by the probe once imported (the probe can fail)', async () => {
    expect(await probe('use')).toEqual({ loaded: true, exportsBackend: 'function' })
  })
})
