import { mkdtemp, mkdir, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import {
  InvalidArgumentError,
  Ip4Net,
  Ip6Net,
  formatSubnetEnv,
  parseNetworkConfig,
  readSubnetEnv,
  subnetEnvValues,
  writeSubnetEnv,
} from '@flannel/core'

let dir: string
beforeEach(async () => {
  dir = await mkdtemp(join(tmpdir(), 'fl-subnetenv-'))
})
afterEach(async () => {
  await rm(dir, { recursive: true, force: true })
})

const V4 = {
  network: Ip4Net.parse('10.244.0.0/16'),
  subnet: Ip4Net.parse('10.244.95.0/24'),
  mtu: 1450,
  ipMasq: false,
}

describe('writeSubnetEnv', () => {
  it('writes the four lines flanneld writes for an IPv4 vxlan host (interop.md 3)', async () => {
    const path = join(dir, 'subnet.env')
    await writeSubnetEnv(path, V4)
    expect(await readFile(path, 'utf8')).toBe(
      'FLANNEL_NETWORK=10.244.0.0/16\nFLANNEL_SUBNET=10.244.95.1/24\nFLANNEL_MTU=1450\nFLANNEL_IPMASQ=false\n',
    )
  })

  it('writes the IPv6 pair after the IPv4 pair in dual-stack mode', () => {
    expect(
      formatSubnetEnv({
        network: Ip4Net.parse('10.5.0.0/16'),
        subnet: Ip4Net.parse('10.5.52.0/24'),
        ipv6Network: Ip6Net.parse('fc00::/48'),
        ipv6Subnet: Ip6Net.parse('fc00:0:0:34::/64'),
        mtu: 1450,
        ipMasq: true,
      }),
    ).toBe(
      [
        'FLANNEL_NETWORK=10.5.0.0/16',
        'FLANNEL_SUBNET=10.5.52.1/24',
        'FLANNEL_IPV6_NETWORK=fc00::/48',
        'FLANNEL_IPV6_SUBNET=fc00:0:0:34::1/64',
        'FLANNEL_MTU=1450',
        'FLANNEL_IPMASQ=true',
        '',
      ].join('\n'),
    )
  })

  it('builds the values from a config and a lease, by enabled family', () => {
    const config = parseNetworkConfig({
      EnableIPv4: false,
      EnableIPv6: true,
      IPv6Network: 'fc00::/48',
    })
    const lease = {
      subnet: Ip4Net.EMPTY,
      ipv6Subnet: Ip6Net.parse('fc00:0:0:7::/64'),
      attrs: { publicIP: '0.0.0.0' },
      expiration: new Date(0),
    }
    expect(formatSubnetEnv(subnetEnvValues(config, lease, 1500, false))).toBe(
      'FLANNEL_IPV6_NETWORK=fc00::/48\nFLANNEL_IPV6_SUBNET=fc00:0:0:7::1/64\nFLANNEL_MTU=1500\nFLANNEL_IPMASQ=false\n',
    )
  })

  it('creates the directory, sets mode 0644 regardless of umask and leaves no temporary file', async () => {
    const path = join(dir, 'run', 'flannel', 'subnet.env')
    const old = process.umask(0o077)
    try {
      await writeSubnetEnv(path, V4)
    } finally {
      process.umask(old)
    }
    expect((await stat(path)).mode & 0o777).toBe(0o644)
    expect(await readdir(join(dir, 'run', 'flannel'))).toEqual(['subnet.env'])
  })

  it('replaces an existing file', async () => {
    const path = join(dir, 'subnet.env')
    await writeFile(path, 'FLANNEL_SUBNET=10.9.9.1/24\n')
    await writeSubnetEnv(path, { ...V4, mtu: 1500, ipMasq: true })
    expect(await readFile(path, 'utf8')).toContain('FLANNEL_MTU=1500\nFLANNEL_IPMASQ=true\n')
  })

  it('leaves nothing behind and the old state untouched when the rename fails', async () => {
    const path = join(dir, 'subnet.env')
    await mkdir(path) // a directory where the file should go: rename(2) refuses
    await expect(writeSubnetEnv(path, V4)).rejects.toThrow()
    expect(await readdir(dir)).toEqual(['subnet.env'])
    expect((await stat(path)).isDirectory()).toBe(true)
  })

  it.each([
    // /proc/1 exists but mkdir of a child answers ENOENT: Node's recursive mkdir loops on it forever
    ['/proc/1/nope/subnet.env', { code: 'ENOENT', syscall: 'mkdir', path: '/proc/1/nope' }],
    ['/proc/1/nope/deeper/subnet.env', { code: 'ENOENT', syscall: 'mkdir', path: '/proc/1/nope' }],
  ])('fails at once where the directory cannot be created: %s', async (path, error) => {
    await expect(writeSubnetEnv(path, V4)).rejects.toMatchObject(error)
  })

  it('fails with ENOTDIR below a regular file', async () => {
    await writeFile(join(dir, 'file'), '')
    await expect(writeSubnetEnv(join(dir, 'file', 'run', 'subnet.env'), V4)).rejects.toMatchObject({
      code: 'ENOTDIR',
    })
  })

  it('rejects a bad MTU before touching the disk', async () => {
    const path = join(dir, 'subnet.env')
    await expect(writeSubnetEnv(path, { ...V4, mtu: 0 })).rejects.toBeInstanceOf(
      InvalidArgumentError,
    )
    expect(await readdir(dir)).toEqual([])
  })

  it('stops before writing when the signal is aborted', async () => {
    const path = join(dir, 'subnet.env')
    await expect(writeSubnetEnv(path, V4, { signal: AbortSignal.abort() })).rejects.toMatchObject({
      code: 'ABORTED',
    })
    expect(await readdir(dir)).toEqual([])
  })
})

describe('readSubnetEnv', () => {
  it('returns {} for a missing file', async () => {
    expect(await readSubnetEnv(join(dir, 'nope.env'))).toEqual({})
  })

  it('reads back what was written, host bits masked', async () => {
    const path = join(dir, 'subnet.env')
    await writeSubnetEnv(path, {
      ...V4,
      ipv6Network: Ip6Net.parse('fc00::/48'),
      ipv6Subnet: Ip6Net.parse('fc00:0:0:34::/64'),
    })
    const prev = await readSubnetEnv(path)
    expect(prev.subnet?.toString()).toBe('10.244.95.0/24')
    expect(prev.ipv6Subnet?.toString()).toBe('fc00:0:0:34::/64')
    expect(prev.network?.toString()).toBe('10.244.0.0/16')
    expect(prev.ipv6Network?.toString()).toBe('fc00::/48')
  })

  it('accepts dotenv forms (export, quotes, comments)', async () => {
    const path = join(dir, 'subnet.env')
    await writeFile(
      path,
      '# written by hand\nexport FLANNEL_SUBNET="10.1.2.3/24"\nFLANNEL_NETWORK=10.1.0.0/16 # pods\n',
    )
    const prev = await readSubnetEnv(path)
    expect(prev.subnet?.toString()).toBe('10.1.2.0/24')
    expect(prev.network?.toString()).toBe('10.1.0.0/16')
  })

  it.each([
    ['FLANNEL_SUBNET=nonsense\n', undefined],
    ['FLANNEL_SUBNET=10.1.2.1/24,nonsense\n', '10.1.2.0/24'],
    ['FLANNEL_SUBNET=10.1.2.1/24,10.1.3.1/24\n', undefined],
    ['FLANNEL_SUBNET=\n', undefined],
    ['FLANNEL_MTU=1450\n', undefined],
  ])('takes exactly one valid entry: %j', async (text, expected) => {
    const path = join(dir, 'subnet.env')
    await writeFile(path, text)
    expect((await readSubnetEnv(path)).subnet?.toString()).toBe(expected)
  })
})
