import { mkdtempSync, rmSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { EMPTY } from 'rxjs'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { Ip4Net, parseNetworkConfig, type LeaseAttrs, type SubnetRegistry } from '@flannel/core'
import { startLocalServer, type LocalServer } from '@flannel/testkit/http'
import { GceAuthError, GceBackend } from '@flannel/backend-gce'

// Its own file (own process): Google's metadata library caches whether it runs on GCE.
const saved = {
  home: process.env.HOME,
  gac: process.env.GOOGLE_APPLICATION_CREDENTIALS,
  host: process.env.GCE_METADATA_HOST,
}
let home: string
let notGce: LocalServer
let apiCalls = 0
beforeAll(async () => {
  home = mkdtempSync(join(tmpdir(), 'flgce-'))
  process.env.HOME = home
  delete process.env.GOOGLE_APPLICATION_CREDENTIALS
  // A metadata host that is not a GCE metadata server: ADC finds nothing.
  notGce = await startLocalServer((req, res) => {
    if (!(req.url ?? '').startsWith('/computeMetadata')) apiCalls += 1
    res.writeHead(404)
    res.end('not here')
  })
  process.env.GCE_METADATA_HOST = notGce.url.replace('http://', '')
})
afterAll(async () => {
  await notGce.close()
  for (const [key, value] of [
    ['HOME', saved.home],
    ['GOOGLE_APPLICATION_CREDENTIALS', saved.gac],
    ['GCE_METADATA_HOST', saved.host],
  ] as const) {
    if (value === undefined) delete process.env[key]
    else process.env[key] = value
  }
  rmSync(home, { recursive: true, force: true })
})

describe('GceBackend without Application Default Credentials', () => {
  it('fails with GceAuthError before leasing or calling the API', async () => {
    const acquired: LeaseAttrs[] = []
    const config = parseNetworkConfig({ Network: '10.5.0.0/16', Backend: { Type: 'gce' } })
    const registry: SubnetRegistry = {
      getNetworkConfig: async () => config,
      acquireLease: async (attrs) => {
        acquired.push(attrs)
        return { subnet: Ip4Net.parse('10.5.34.0/24'), attrs, expiration: new Date() }
      },
      renewLease: async (l) => l,
      releaseLease: async () => {},
      watchLeases: () => EMPTY,
      close: async () => {},
    }
    const backend = new GceBackend(
      { registry, extIface: { name: 'eth0', index: 2, mtu: 1460, ifaceAddr: '192.0.2.20' } },
      {
        apiEndpoint: notGce.url,
        project: 'p',
        zone: 'z',
        instanceName: 'i',
        network: 'n',
      },
    )
    let err: unknown
    try {
      await backend.registerNetwork(config)
    } catch (e) {
      err = e
    }
    expect(err).toBeInstanceOf(GceAuthError)
    expect((err as Error).message).toMatch(/default credentials/i)
    expect(acquired).toEqual([])
    expect(apiCalls).toBe(0)
  })
})
