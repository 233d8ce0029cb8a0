/**
 * The flannel-agent process (from source) in a network namespace of its own,
 * against a real etcd in that namespace, with the alloc backend: start-up,
 * rules, readiness, SIGTERM, and every fatal path leaving nothing behind.
 * Needs root and etcd; skipped with the reason otherwise.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process'
import { randomBytes } from 'node:crypto'
import { mkdir, mkdtemp, readFile, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest'
import { etcdMissingReason, startEtcd, type EtcdServer } from '@flannel/testkit/etcd'

const reason = process.getuid?.() !== 0 ? 'needs root (network namespaces)' : etcdMissingReason()
if (reason) console.warn(`flannel-agent namespace tests skipped: ${reason}`)

const cli = fileURLToPath(new URL('../src/cli.ts', import.meta.url))
const ns = `fl${randomBytes(2).toString('hex')}`
const ip = (...args: string[]) => execFileSync('ip', args, { encoding: 'utf8' })
const inNs = (cmd: string, ...args: string[]) =>
  execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8' })

describe.skipIf(reason)(
  `flannel-agent in a namespace${reason ? ` (skipped: ${reason})` : ''}`,
  () => {
    let etcd: EtcdServer
    let dir: string
    let child: ChildProcess | undefined

    beforeAll(async () => {
      ip('netns', 'add', ns)
      ip('-n', ns, 'link', 'set', 'lo', 'up')
      ip('-n', ns, 'link', 'add', 'br0', 'type', 'bridge')
      ip('-n', ns, 'addr', 'add', '192.0.2.10/24', 'dev', 'br0')
      ip('-n', ns, 'link', 'set', 'br0', 'up')
      ip('-n', ns, 'route', 'add', 'default', 'via', '192.0.2.1', 'dev', 'br0', 'onlink')
      etcd = await startEtcd({ netns: ns })
      dir = await mkdtemp(join(tmpdir(), 'flcli-'))
    }, 30_000)

    afterEach(async () => {
      if (child && child.exitCode === null && child.signalCode === null) {
        child.kill('SIGKILL')
        await new Promise((r) => child!.once('exit', r))
      }
      child = undefined
      await etcd.etcdctl('del', '--prefix', '/coreos.com/network/')
      await rm(join(dir, 'subnet.env'), { force: true })
      inNs('iptables', '-t', 'nat', '-F')
      inNs('iptables', '-t', 'filter', '-F')
      inNs('ip', 'route', 'flush', 'type', 'blackhole')
    })

    afterAll(async () => {
      await etcd?.stop()
      try {
        ip('netns', 'del', ns)
      } finally {
        await rm(dir, { recursive: true, force: true })
      }
    })

    function agent(...flags: string[]) {
      child = spawn(
        'ip',
        [
          'netns',
          'exec',
          ns,
          process.execPath,
          '--conditions=@flannel/source',
          '--import',
          'tsx',
          cli,
          `--etcd-endpoints=${etcd.endpoints.join(',')}`,
          `--subnet-file=${join(dir, 'subnet.env')}`,
          ...flags,
        ],
        { env: { ...process.env } },
      )
      const out = { stderr: '' }
      child.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()))
      const exited = new Promise<number | null>((r) => child!.once('exit', (code) => r(code)))
      return { out, exited }
    }

    const config = (json: string) => etcd.etcdctl('put', '/coreos.com/network/config', json)
    const leases = async () =>
      (await etcd.etcdctl('get', '--prefix', '--keys-only', '/coreos.com/network/subnets/')).trim()
    const lastLine = (text: string) => text.trim().split('\n').at(-1)
    const flannelRules = () =>
      inNs('iptables-save')
        .split('\n')
        .filter((l) => /flannel/i.test(l))

    async function readyz(port: number): Promise<number> {
      try {
        return Number(
          inNs(
            'curl',
            '-s',
            '-o',
            '/dev/null',
            '-w',
            '%{http_code}',
            `http://127.0.0.1:${port}/readyz`,
          ),
        )
      } catch {
        return 0
      }
    }

    it('starts, installs the rules, becomes ready; SIGTERM exits 0 keeping lease and subnet.env', async () => {
      await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
      const { exited } = agent(
        '--ip-masq',
        '--iptables-resync=1',
        '--healthz-ip=127.0.0.1',
        '--healthz-port=18471',
      )
      for (let i = 0; i < 300 && (await readyz(18471)) !== 200; i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(await readyz(18471)).toBe(200)
      const env = await readFile(join(dir, 'subnet.env'), 'utf8')
      expect(env).toMatch(
        /^FLANNEL_NETWORK=10\.5\.0\.0\/16\nFLANNEL_SUBNET=10\.5\.\d+\.1\/24\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n$/,
      )
      expect(flannelRules()).toContain(
        '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      )
      expect(flannelRules()).toContain(
        '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      )
      // a flushed chain comes back by the next --iptables-resync check
      inNs('iptables', '-t', 'filter', '-F', 'FLANNEL-FWD')
      const accept =
        '-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT'
      expect(flannelRules()).not.toContain(accept)
      for (let i = 0; i < 100 && !flannelRules().includes(accept); i++) {
        await new Promise((r) => setTimeout(r, 50))
      }
      expect(flannelRules()).toContain(accept)
      const metrics = inNs('curl', '-s', 'http://127.0.0.1:18471/metrics')
      expect(metrics).toContain('flannel_leases_known 0')
      child!.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(await leases()).toMatch(/^\/coreos\.com\/network\/subnets\/10\.5\.\d+\.0-24$/)
      await stat(join(dir, 'subnet.env'))
    }, 60_000)

    it('--ip-blackhole-route blackholes the own subnet, restores it, yields to a bridge and keeps it on SIGTERM', async () => {
      await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
      // an owned blackhole route left by an earlier lease, and someone else's
      inNs('ip', 'route', 'add', 'blackhole', '10.6.7.0/24', 'proto', '70')
      inNs('ip', 'route', 'add', 'blackhole', '10.6.8.0/24')
      const { exited } = agent(
        '--ip-blackhole-route',
        '--iptables-resync=1',
        '--healthz-ip=127.0.0.1',
        '--healthz-port=18472',
      )
      for (let i = 0; i < 300 && (await readyz(18472)) !== 200; i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(await readyz(18472)).toBe(200)
      const env = await readFile(join(dir, 'subnet.env'), 'utf8')
      const subnet = /FLANNEL_SUBNET=(10\.5\.\d+)\.1\/24/.exec(env)![1] + '.0/24'
      const blackholes = () =>
        inNs('ip', 'route', 'show', 'type', 'blackhole')
          .trim()
          .split('\n')
          .map((l) => l.trim())
      expect(blackholes().sort()).toEqual(
        [`blackhole ${subnet} proto 70`, 'blackhole 10.6.8.0/24'].sort(),
      )
      // deleted by hand: back by the next --iptables-resync check
      inNs('ip', 'route', 'del', 'blackhole', subnet)
      for (let i = 0; i < 200 && !blackholes().includes(`blackhole ${subnet} proto 70`); i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(blackholes()).toContain(`blackhole ${subnet} proto 70`)
      // a bridge takes the subnet (pods on cni0): the blackhole would shadow it, so it goes
      const pod = subnet.replace(/\.0\/24$/, '.1/24')
      inNs('ip', 'link', 'add', 'cni0', 'type', 'bridge')
      try {
        inNs('ip', 'addr', 'add', pod, 'dev', 'cni0')
        inNs('ip', 'link', 'set', 'cni0', 'up')
        for (let i = 0; i < 200 && blackholes().includes(`blackhole ${subnet} proto 70`); i++)
          await new Promise((r) => setTimeout(r, 50))
        expect(blackholes()).not.toContain(`blackhole ${subnet} proto 70`)
        expect(inNs('ip', 'route', 'get', subnet.replace(/\.0\/24$/, '.5'))).toContain('dev cni0')
      } finally {
        inNs('ip', 'link', 'del', 'cni0')
      }
      // the bridge gone, the blackhole is back
      for (let i = 0; i < 200 && !blackholes().includes(`blackhole ${subnet} proto 70`); i++)
        await new Promise((r) => setTimeout(r, 50))
      expect(blackholes()).toContain(`blackhole ${subnet} proto 70`)
      child!.kill('SIGTERM')
      expect(await exited).toBe(0)
      expect(blackholes()).toContain(`blackhole ${subnet} proto 70`)
    }, 60_000)

    it('several agents starting at once in one namespace, with another process changing the same chain, all get ready with distinct leases', async () => {
      await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
      // Two other writers of the FORWARD chain (as other agents' applies would be):
      // each appends a copy of the jump and deletes the first one, over and over.
      const jump = '-m comment --comment "flanneld forward" -j FLANNEL-FWD'
      inNs('sh', '-c', `iptables -N FLANNEL-FWD 2>/dev/null; iptables -A FORWARD ${jump}`)
      const loop = `while :; do iptables -A FORWARD ${jump}; iptables -D FORWARD ${jump}; done`
      const churn = [1, 2].map(() => spawn('ip', ['netns', 'exec', ns, 'sh', '-c', loop]))
      const churnExited = Promise.all(churn.map((c) => new Promise((r) => c.once('exit', r))))
      const count = 5
      const started = Array.from({ length: count }, (_, i) => {
        const subnetFile = join(dir, `many-${i}.env`)
        const proc = spawn(
          'ip',
          [
            'netns',
            'exec',
            ns,
            process.execPath,
            '--conditions=@flannel/source',
            '--import',
            'tsx',
            cli,
            `--etcd-endpoints=${etcd.endpoints.join(',')}`,
            `--subnet-file=${subnetFile}`,
            '--iface=br0',
            `--public-ip=198.51.100.${i + 1}`,
            '--iptables-resync=1',
          ],
          { env: { ...process.env } },
        )
        const out = { stderr: '' }
        proc.stderr!.on('data', (d: Buffer) => (out.stderr += d.toString()))
        const exited = new Promise<number | null>((r) => proc.once('exit', (code) => r(code)))
        return { proc, out, exited, subnetFile }
      })
      const forwardJumps = () => flannelRules().filter((l) => l.startsWith('-A FORWARD '))
      try {
        const written = async () =>
          (
            await Promise.all(
              started.map((a) =>
                stat(a.subnetFile).then(
                  () => true,
                  () => false,
                ),
              ),
            )
          ).filter(Boolean).length
        for (
          let i = 0;
          i < 600 && (await written()) < count && started.every((a) => a.proc.exitCode === null);
          i++
        )
          await new Promise((r) => setTimeout(r, 50))
        for (const c of churn) c.kill('SIGKILL')
        await churnExited
        const exits = started
          .filter((a) => a.proc.exitCode !== null)
          .map((a) => lastLine(a.out.stderr))
        expect(exits).toEqual([])
        expect(await written()).toBe(count)
        const subnets = await Promise.all(
          started.map(
            async (a) => /FLANNEL_SUBNET=(\S+)/.exec(await readFile(a.subnetFile, 'utf8'))![1],
          ),
        )
        expect(new Set(subnets).size).toBe(count)
        expect((await leases()).split('\n').filter(Boolean)).toHaveLength(count)
        // Whatever the writers left (no jump, or two), the next checks make it exactly one.
        for (let i = 0; i < 200 && forwardJumps().length !== 1; i++)
          await new Promise((r) => setTimeout(r, 50))
        expect(forwardJumps()).toEqual([
          '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
        ])
        for (const a of started) a.proc.kill('SIGTERM')
        expect(await Promise.all(started.map((a) => a.exited))).toEqual(started.map(() => 0))
      } finally {
        for (const c of churn) c.kill('SIGKILL')
        for (const a of started) {
          if (a.proc.exitCode === null && a.proc.signalCode === null) a.proc.kill('SIGKILL')
        }
        await Promise.all(started.map((a) => a.exited))
        await Promise.all(started.map((a) => rm(a.subnetFile, { force: true })))
      }
    }, 90_000)

    it('an invalid config is retried every second until it is fixed, then the agent starts', async () => {
      const deep = `${'['.repeat(10_000)}${']'.repeat(10_000)}`
      await config(`{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"},"X":${deep}}`)
      const { out, exited } = agent('--healthz-ip=127.0.0.1', '--healthz-port=18473')
      const logged = (text: string) =>
        out.stderr.split('\n').filter((l) => l.includes(`Couldn't fetch network config: ${text}`))
          .length
      const until = async (cond: () => boolean | Promise<boolean>) => {
        for (let i = 0; i < 400 && !(await cond()); i++) await new Promise((r) => setTimeout(r, 50))
        expect(await cond()).toBe(true)
      }
      // as flanneld: the same line every second, the process stays up
      await until(() => logged("invalid character '[' exceeded max depth") >= 2)
      await config('{"Network":"10.1.0.0/29","Backend":{"Type":"alloc"}}')
      await until(() => logged('network is too small. Minimum useful network prefix is /28') >= 2)
      expect(out.stderr).not.toContain('Maximum call stack')
      expect(child!.exitCode).toBeNull()
      expect(await readyz(18473)).toBe(503)
      expect(await leases()).toBe('')
      await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
      await until(async () => (await readyz(18473)) === 200)
      expect(await leases()).toMatch(/^\/coreos\.com\/network\/subnets\/10\.5\.\d+\.0-24$/)
      child!.kill('SIGTERM')
      expect(await exited).toBe(0)
    }, 60_000)

    it.each([
      ['/proc/1/nope/subnet.env', "ENOENT: no such file or directory, mkdir '/proc/1/nope'"],
      ['immutable/subnet.env', 'EPERM: operation not permitted, open'],
    ])(
      '--subnet-file=%s that cannot be written: exit 1 naming path and reason, lease and rules released',
      async (file, reason) => {
        await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
        const immutable = join(dir, 'immutable')
        const path = file.startsWith('/') ? file : join(dir, file)
        if (!file.startsWith('/')) {
          await mkdir(immutable, { recursive: true })
          execFileSync('chattr', ['+i', immutable])
        }
        try {
          const { out, exited } = agent('--ip-masq', `--subnet-file=${path}`)
          expect(await exited).toBe(1)
          const line = lastLine(out.stderr)!
          expect(line.startsWith(`Failed to write subnet file ${path}: ${reason}`)).toBe(true)
          // every failed attempt was logged with the path
          expect(out.stderr.match(/"path":"[^"]*subnet\.env"[^\n]*attempt/g)).toHaveLength(2)
          expect(await leases()).toBe('')
          expect(flannelRules().filter((l) => l.startsWith('-A'))).toEqual([])
        } finally {
          if (!file.startsWith('/')) execFileSync('chattr', ['-i', immutable])
        }
      },
      60_000,
    )

    it('a deleted own lease exits 0 with flanneld text, as flanneld', async () => {
      await config('{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}')
      const { out, exited } = agent()
      for (let i = 0; i < 300 && (await leases()) === ''; i++)
        await new Promise((r) => setTimeout(r, 50))
      await new Promise((r) => setTimeout(r, 300))
      await etcd.etcdctl('del', await leases())
      expect(await exited).toBe(0)
      expect(lastLine(out.stderr)).toBe('Lease has been revoked. Shutting down daemon.')
    }, 60_000)

    it.each([
      [
        '{"Network":"10.5.0.0/16","Backend":{"Type":"vxlan","VNI":"x"}}',
        [],
        'Error registering network: invalid Backend.VNI "x": expected an integer',
      ],
      [
        '{"Network":"10.5.0.0/16","Backend":{"Type":"foo"}}',
        [],
        'Error registering network: unknown backend type: foo',
      ],
      [
        '{"Network":"10.5.0.0/16","Backend":{"Type":"alloc"}}',
        ['--iface=nope0'],
        'Failed to find interface to use that matches the interfaces and/or regexes provided',
      ],
      [
        '{"Network":"10.5.0.0/16","SubnetMin":"10.5.1.0","SubnetMax":"10.5.1.0","Backend":{"Type":"alloc"}}',
        ['--public-ip=192.0.2.10', '--iface=br0'],
        null,
      ],
    ])(
      '%s %j exits 1 with one line and leaves nothing behind',
      async (json, flags, line) => {
        await config(json)
        if (line === null) {
          // the only subnet is taken by another host: out of subnets
          await etcd.etcdctl(
            'put',
            '/coreos.com/network/subnets/10.5.1.0-24',
            '{"PublicIP":"192.0.2.99","PublicIPv6":null}',
          )
        }
        const before = await leases()
        const { out, exited } = agent('--ip-masq', ...flags)
        expect(await exited).toBe(1)
        expect(lastLine(out.stderr)).toBe(
          line ?? 'Error registering network: failed to acquire lease: out of subnets',
        )
        expect(await leases()).toBe(before)
        expect(flannelRules().filter((l) => l.startsWith('-A'))).toEqual([])
        await expect(stat(join(dir, 'subnet.env'))).rejects.toThrow()
      },
      60_000,
    )
  },
)
