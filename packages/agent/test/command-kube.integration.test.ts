import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { ExternalInterface, Logger } from '@flannel/core'
import { optionsFromFlags, startAgentCommand } from '@flannel/agent'
import {
  kubeSkipReason,
  startKubeApiserver,
  type KubeApiserver,
  type KubeNode,
} from '@flannel/testkit/kube'

const skip = kubeSkipReason()
if (skip) console.warn(`flannel-agent --kube-subnet-mgr integration test skipped: ${skip}`)

const P = 'flannel.alpha.coreos.com/'
const ext: ExternalInterface = {
  name: 'eth0',
  index: 2,
  mtu: 1500,
  ifaceAddr: '192.0.2.30',
  extAddr: '192.0.2.30',
}

/** Keeps every log message. */
function memoryLogger(lines: string[]): Logger {
  const log = (a: object | string, b?: string): void =>
    void lines.push(typeof a === 'string' ? a : (b ?? ''))
  const logger: Logger = {
    trace: log,
    debug: log,
    info: log,
    warn: log,
    error: log,
    child: () => logger,
  }
  return logger
}

async function until(
  what: string,
  cond: () => boolean | Promise<boolean>,
  ms = 30_000,
): Promise<void> {
  const deadline = Date.now() + ms
  while (!(await cond())) {
    if (Date.now() > deadline) throw new Error(`gave up waiting for ${what}`)
    await new Promise((r) => setTimeout(r, 20))
  }
}

describe.skipIf(skip)(
  `flannel-agent --kube-subnet-mgr on a real kube-apiserver${skip ? ` (skipped: ${skip})` : ''}`,
  () => {
    let api: KubeApiserver
    let dir: string
    beforeAll(async () => {
      api = await startKubeApiserver()
      dir = await mkdtemp(join(tmpdir(), 'flannel-kube-cmd-'))
    }, 120_000)
    afterAll(async () => {
      await api?.stop()
      await rm(dir, { recursive: true, force: true })
    })

    it("waits for the podCIDR with flanneld's message, then writes subnet.env, the annotations and the condition; SIGTERM exits 0", async () => {
      await api.createNode('kube-cmd-1')
      const netConf = join(dir, 'net-conf.json')
      await writeFile(netConf, '{"Network":"10.244.0.0/16","Backend":{"Type":"alloc"}}')
      const subnetFile = join(dir, 'subnet.env')
      const lines: string[] = []
      const command = await startAgentCommand(
        optionsFromFlags(
          [
            '--kube-subnet-mgr',
            `--kubeconfig-file=${api.kubeconfigPath}`,
            `--net-config-path=${netConf}`,
            `--subnet-file=${subnetFile}`,
          ],
          {},
        ),
        {
          extIface: ext,
          hostRules: false,
          logger: memoryLogger(lines),
          env: { NODE_NAME: 'kube-cmd-1' },
        },
      )
      try {
        await until('the podCIDR message', () =>
          lines.some((l) => l.startsWith('node "kube-cmd-1" pod cidr not assigned')),
        )
        expect(lines).toContain('Created subnet manager: Kubernetes Subnet Manager - kube-cmd-1')
        expect(command.isReady()).toBe(false)
        const patch = await api.request(
          'PATCH',
          '/api/v1/nodes/kube-cmd-1',
          { spec: { podCIDR: '10.244.5.0/24', podCIDRs: ['10.244.5.0/24'] } },
          { contentType: 'application/strategic-merge-patch+json' },
        )
        expect(patch.status).toBe(200)
        await until('ready', () => command.isReady())
        expect(await readFile(subnetFile, 'utf8')).toContain('FLANNEL_SUBNET=10.244.5.1/24')
        await until('the condition', async () => {
          const node = (await api.request<KubeNode>('GET', '/api/v1/nodes/kube-cmd-1')).body
          return (
            node.status?.conditions?.some(
              (c) => c.type === 'NetworkUnavailable' && c.status === 'False',
            ) ?? false
          )
        })
        const node = (await api.request<KubeNode>('GET', '/api/v1/nodes/kube-cmd-1')).body
        // alloc publishes flanneld's empty backend-type and null data.
        expect(node.metadata.annotations).toEqual({
          [`${P}backend-data`]: 'null',
          [`${P}backend-type`]: '',
          [`${P}kube-subnet-manager`]: 'true',
          [`${P}public-ip`]: '192.0.2.30',
        })
      } finally {
        command.stop()
      }
      expect(await command.done).toEqual({ code: 0 })
    }, 90_000)
  },
)
