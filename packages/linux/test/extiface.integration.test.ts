import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { selectExternalInterface } from '../src/index.js'
import {
  Namespaces,
  RemoteHostNetwork,
  inNs,
  kernelTestsUnavailable,
  runPrefix,
} from './helpers/netns.js'

const unavailable = await kernelTestsUnavailable()
if (unavailable) console.warn(`external interface namespace tests skipped: ${unavailable}`)

describe.skipIf(unavailable !== undefined)(
  `selectExternalInterface on a namespace's real links${unavailable ? ` (skipped: ${unavailable})` : ''}`,
  () => {
    const prefix = runPrefix()
    const namespaces = new Namespaces()
    const ns = `${prefix}-if`
    let host: RemoteHostNetwork

    beforeAll(async () => {
      await namespaces.create(ns)
      await inNs(ns, 'ip', ['link', 'add', 'up0', 'type', 'veth', 'peer', 'name', 'up1'])
      await inNs(ns, 'ip', ['link', 'add', 'side0', 'type', 'veth', 'peer', 'name', 'side1'])
      await inNs(ns, 'ip', ['link', 'set', 'up0', 'mtu', '1400'])
      for (const l of ['up0', 'up1', 'side0', 'side1'])
        await inNs(ns, 'ip', ['link', 'set', l, 'up'])
      await inNs(ns, 'ip', ['addr', 'add', '192.0.2.10/24', 'dev', 'up0'])
      await inNs(ns, 'ip', ['addr', 'add', '198.51.100.10/24', 'dev', 'side0'])
      await inNs(ns, 'ip', ['route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'up0'])
      host = new RemoteHostNetwork(ns)
      await host.start()
    })

    afterAll(async () => {
      await host?.close()
      await namespaces.removeAll()
    })

    it('picks the default-route interface with its address and MTU', async () => {
      const ext = await selectExternalInterface(host)
      expect(ext).toMatchObject({
        name: 'up0',
        mtu: 1400,
        ifaceAddr: '192.0.2.10',
        extAddr: '192.0.2.10',
      })
      expect(ext.index).toBe((await host.getLink('up0'))!.index)
    })

    it('honours --iface by address and --iface-regex, and --public-ip', async () => {
      expect((await selectExternalInterface(host, { iface: ['198.51.100.10'] })).name).toBe('side0')
      expect((await selectExternalInterface(host, { ifaceRegex: ['^side'] })).name).toBe('side0')
      expect(
        await selectExternalInterface(host, { iface: ['up0'], publicIP: '203.0.113.1' }),
      ).toMatchObject({
        ifaceAddr: '192.0.2.10',
        extAddr: '203.0.113.1',
      })
      await expect(selectExternalInterface(host, { iface: ['up1'] })).rejects.toThrow(
        'Failed to find interface to use that matches the interfaces and/or regexes provided',
      )
    })
  },
)
