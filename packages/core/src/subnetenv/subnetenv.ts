import { randomBytes } from 'node:crypto'
import { chmod, mkdir, open, readFile, rename, rm, stat } from 'node:fs/promises'
import { basename, dirname, join } from 'node:path'
import { InvalidArgumentError, throwIfAborted } from '../errors.js'
import { Ip4Net } from '../ip/ip4.js'
import { Ip6Net } from '../ip/ip6.js'
import type { NetworkConfig } from '../config/types.js'
import type { Lease, PreviousSubnets } from '../lease/types.js'
import { parseDotenv } from './dotenv.js'

/** flanneld's default subnet file path (`--subnet-file`). */
export const DEFAULT_SUBNET_FILE = '/run/flannel/subnet.env'

/**
 * What subnet.env holds (spec: core.md section 8). The IPv4 pair is written
 * when `network` and `subnet` are both given, the IPv6 pair likewise.
 */
export interface SubnetEnvValues {
  /** The config's IPv4 network -> `FLANNEL_NETWORK`. */
  readonly network?: Ip4Net | undefined
  /** This host's IPv4 lease subnet; written as its first address: `10.5.52.0/24` -> `FLANNEL_SUBNET=10.5.52.1/24`. */
  readonly subnet?: Ip4Net | undefined
  /** The config's IPv6 network -> `FLANNEL_IPV6_NETWORK`. */
  readonly ipv6Network?: Ip6Net | undefined
  /** This host's IPv6 lease subnet; written as its first address (`FLANNEL_IPV6_SUBNET`). */
  readonly ipv6Subnet?: Ip6Net | undefined
  /** The backend's MTU -> `FLANNEL_MTU`. */
  readonly mtu: number
  /** The `--ip-masq` flag -> `FLANNEL_IPMASQ`. */
  readonly ipMasq: boolean
}

/** What {@link readSubnetEnv} found: the previous subnets, and the networks they belonged to. */
export interface SubnetEnvSnapshot extends PreviousSubnets {
  /** `FLANNEL_NETWORK`, when it held exactly one valid network. */
  readonly network?: Ip4Net | undefined
  /** `FLANNEL_IPV6_NETWORK`, when it held exactly one valid network. */
  readonly ipv6Network?: Ip6Net | undefined
}

/**
 * The subnet.env values flanneld writes for a config, this host's lease, the
 * backend's MTU and the `--ip-masq` flag.
 */
export function subnetEnvValues(
  config: NetworkConfig,
  lease: Lease,
  mtu: number,
  ipMasq: boolean,
): SubnetEnvValues {
  return {
    network: config.enableIPv4 ? config.network : undefined,
    subnet: config.enableIPv4 ? lease.subnet : undefined,
    ipv6Network: config.enableIPv6 ? config.ipv6Network : undefined,
    ipv6Subnet: config.enableIPv6 ? lease.ipv6Subnet : undefined,
    mtu,
    ipMasq,
  }
}

/** The exact text flanneld writes to subnet.env for `values`. */
export function formatSubnetEnv(values: SubnetEnvValues): string {
  if (!Number.isInteger(values.mtu) || values.mtu <= 0) {
    throw new InvalidArgumentError('mtu', values.mtu, 'must be a positive integer')
  }
  let text = ''
  if (values.network !== undefined && values.subnet !== undefined) {
    const first = new Ip4Net((values.subnet.ip + 1) % 2 ** 32, values.subnet.prefixLength)
    text += `FLANNEL_NETWORK=${values.network.toString()}\n`
    text += `FLANNEL_SUBNET=${first.toString()}\n`
  }
  if (values.ipv6Network !== undefined && values.ipv6Subnet !== undefined) {
    const first = new Ip6Net(
      (values.ipv6Subnet.ip + 1n) % (1n << 128n),
      values.ipv6Subnet.prefixLength,
    )
    text += `FLANNEL_IPV6_NETWORK=${values.ipv6Network.toString()}\n`
    text += `FLANNEL_IPV6_SUBNET=${first.toString()}\n`
  }
  text += `FLANNEL_MTU=${values.mtu}\n`
  text += `FLANNEL_IPMASQ=${values.ipMasq ? 'true' : 'false'}\n`
  return text
}

/**
 * Writes subnet.env the way flanneld does: its variables in its order, then
 * atomically visible (a temporary file in the same directory, flushed, mode
 * 0644 whatever the umask, then renamed over `path`). The directory is
 * created (0755) when missing, one level at a time, so a directory that
 * cannot exist (under `/proc`, below a file) fails at once with the error of
 * the `mkdir` that failed. On failure the temporary file is removed and an
 * existing subnet.env is left untouched.
 */
export async function writeSubnetEnv(
  path: string,
  values: SubnetEnvValues,
  opts: { signal?: AbortSignal } = {},
): Promise<void> {
  const text = formatSubnetEnv(values)
  throwIfAborted(opts.signal)
  const dir = dirname(path)
  await ensureDirectory(dir)
  const temp = join(dir, `.${basename(path)}.${randomBytes(4).toString('hex')}`)
  try {
    const file = await open(temp, 'wx', 0o644)
    try {
      await file.writeFile(text)
      await file.sync()
    } finally {
      await file.close()
    }
    await chmod(temp, 0o644) // the umask may have narrowed the mode given to open
    throwIfAborted(opts.signal)
    await rename(temp, path)
  } catch (err) {
    await rm(temp, { force: true })
    throw err
  }
}

/**
 * Creates `dir` and its missing parents (0755), as Go's `os.MkdirAll` does:
 * walk up to the nearest existing ancestor, then create each missing level
 * in turn. Bounded by the path's depth. Node's own recursive `mkdir` is not
 * used: it loops forever when a parent exists but `mkdir` of the child
 * answers ENOENT (e.g. `/proc/1/nope`).
 */
async function ensureDirectory(dir: string): Promise<void> {
  const missing: string[] = []
  for (let current = dir; ; ) {
    try {
      await stat(current)
      break // exists; if it is not a directory, the next step fails with ENOTDIR
    } catch (err) {
      const parent = dirname(current)
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT' || parent === current) throw err
      missing.push(current)
      current = parent
    }
  }
  for (const level of missing.reverse()) {
    try {
      await mkdir(level, { mode: 0o755 })
    } catch (err) {
      // created meanwhile by someone else: fine
      if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err
    }
  }
}

/**
 * Reads a subnet.env written by flanneld (or {@link writeSubnetEnv}) for the
 * next lease acquisition: `FLANNEL_SUBNET` / `FLANNEL_IPV6_SUBNET` with host
 * bits cleared (`10.5.52.1/24` -> `10.5.52.0/24`). Like flanneld, a value may
 * be a comma-separated list: invalid entries are skipped and anything but
 * exactly one valid entry counts as none. A missing file yields `{}`.
 */
export async function readSubnetEnv(path: string): Promise<SubnetEnvSnapshot> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return {}
    throw err
  }
  const vars = parseDotenv(text)
  const result: {
    -readonly [K in keyof SubnetEnvSnapshot]: SubnetEnvSnapshot[K]
  } = {}
  const subnet = single(vars.get('FLANNEL_SUBNET'), (t) => Ip4Net.parse(t))
  const ipv6Subnet = single(vars.get('FLANNEL_IPV6_SUBNET'), (t) => Ip6Net.parse(t))
  const network = single(vars.get('FLANNEL_NETWORK'), (t) => Ip4Net.parse(t))
  const ipv6Network = single(vars.get('FLANNEL_IPV6_NETWORK'), (t) => Ip6Net.parse(t))
  if (subnet !== undefined) result.subnet = subnet
  if (ipv6Subnet !== undefined) result.ipv6Subnet = ipv6Subnet
  if (network !== undefined) result.network = network
  if (ipv6Network !== undefined) result.ipv6Network = ipv6Network
  return result
}

/** The one valid entry of a comma-separated value, or undefined. */
function single<T>(value: string | undefined, parse: (text: string) => T): T | undefined {
  if (value === undefined) return undefined
  const valid: T[] = []
  for (const entry of value.split(',')) {
    try {
      valid.push(parse(entry))
    } catch {
      // flanneld logs and skips an entry that does not parse
    }
  }
  return valid.length === 1 ? valid[0] : undefined
}
