import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import {
  createTopology,
  netnsSkipReason,
  readAddresses,
  readLinks,
  readRoutes,
  sweepStaleNamespaces,
  type Topology,
} from '../src/netns/index.js'
import { execCommand } from '../src/proc/index.js'

const skip = await netnsSkipReason()
if (skip) console.warn(`testkit netns tests skipped: ${skip}`)

describe.skipIf(skip !== undefined)(
  `testkit netns topology${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let topo: Topology | undefined

    beforeAll(async () => {
      topo = await createTopology({ hosts: 2 })
    }, 20_000)
    afterAll(async () => {
      await topo?.destroy()
    })

    it('joins hosts over the switch and gives each an underlay address, a default route and a pod bridge', async () => {
      const [h1, h2] = topo!.hosts
      expect(h1!.ns).toMatch(/^fk[0-9a-f]{4}h1$/)
      expect(await h1!.exec('ping', ['-c1', '-W2', h2!.underlayIp])).toContain('1 received')
      expect(await h1!.exec('ping', ['-c1', '-W2', topo!.switchIp])).toContain('1 received')
      const routes = await readRoutes(h1!.ns)
      expect(routes.find((r) => r.dst === 'default')?.gateway).toBe(topo!.switchIp)
      await h1!.addPodAddress('10.244.7.1/24')
      const addrs = await readAddresses(h1!.ns, 'cni0')
      expect(addrs.map((a) => `${a.local}/${a.prefixlen}`)).toContain('10.244.7.1/24')
      const cni = await readLinks(h1!.ns, 'cni0')
      expect(cni[0]?.linkinfo?.info_kind).toBe('bridge')
    })

    it('runs long commands in a host and stops them', async () => {
      const p = topo!.hosts[0]!.spawn('sleep', ['30'])
      expect(p.pid).toBeGreaterThan(0)
      expect(await p.stop()).toBeNull() // killed by SIGTERM
    })

    it('destroy removes every namespace, and a sweep spares live runs', async () => {
      const other = await createTopology({ hosts: 1 })
      expect(await sweepStaleNamespaces()).not.toContain(`${other.prefix}sw`)
      await other.destroy()
      const list = await execCommand('ip', ['netns', 'list'])
      expect(list).not.toContain(other.prefix)
    })
  },
)
