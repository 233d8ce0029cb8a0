import { Command, CommanderError, Option } from 'commander'
import { FlannelError, DEFAULT_SUBNET_FILE } from '@flannel/core'

/** A bad command line or environment value; `message` is flanneld's text where it has one. */
export class UsageError extends FlannelError {
  constructor(message: string) {
    super('USAGE', message)
  }
}

/** What the `flannel-agent` command runs with: flanneld's flags (spec: core.md 10.2), parsed. */
export interface AgentCommandOptions {
  /** `--etcd-endpoints`, split on commas. */
  readonly etcdEndpoints: readonly string[]
  /** `--etcd-prefix`. */
  readonly etcdPrefix: string
  /** `--etcd-keyfile` (TLS is used when key and cert are both given). */
  readonly etcdKeyfile: string
  /** `--etcd-certfile`. */
  readonly etcdCertfile: string
  /** `--etcd-cafile`. */
  readonly etcdCafile: string
  /** `--etcd-username`. */
  readonly etcdUsername: string
  /** `--etcd-password`. */
  readonly etcdPassword: string
  /** `--iface`, repeatable: interface names or addresses, in order. */
  readonly iface: readonly string[]
  /** `--iface-regex`, repeatable. */
  readonly ifaceRegex: readonly string[]
  /** `--iface-can-reach`. */
  readonly ifaceCanReach: string
  /** `--public-ip`. */
  readonly publicIP: string
  /** `--public-ipv6`. */
  readonly publicIPv6: string
  /** `--subnet-file`. */
  readonly subnetFile: string
  /** `--subnet-lease-renew-margin`, minutes (1..1439). */
  readonly subnetLeaseRenewMargin: number
  /** `--ip-masq`. */
  readonly ipMasq: boolean
  /** `--ip-masq-fully-random-disable`. */
  readonly ipMasqFullyRandomDisable: boolean
  /** `--iptables-resync`, seconds. */
  readonly iptablesResync: number
  /** `--iptables-forward-rules`. */
  readonly iptablesForwardRules: boolean
  /** `--ip-blackhole-route`: keep a blackhole route for the own subnet(s), checked every `--iptables-resync` seconds. */
  readonly ipBlackholeRoute: boolean
  /** `--kube-subnet-mgr`: leases from the Kubernetes API (Node podCIDRs and annotations) instead of etcd. */
  readonly kubeSubnetMgr: boolean
  /** `--kube-api-url`: API server URL (kube mode; empty: from the kubeconfig or in-cluster). */
  readonly kubeApiUrl: string
  /** `--kubeconfig-file`: kubeconfig path (kube mode; empty: in-cluster service account). */
  readonly kubeconfigFile: string
  /** `--kube-annotation-prefix` (kube mode), normalised as flanneld. */
  readonly kubeAnnotationPrefix: string
  /** `--net-config-path`: net-conf.json (kube mode). */
  readonly netConfigPath: string
  /** `--set-node-network-unavailable`: set the Node's NetworkUnavailable condition to False once ready (kube mode). */
  readonly setNodeNetworkUnavailable: boolean
  /** `--healthz-ip`. */
  readonly healthzIP: string
  /** `--healthz-port`; 0 turns the HTTP server off. */
  readonly healthzPort: number
  /** `-v`, log verbosity. */
  readonly v: number
  /** `--version`: print the version to stderr and exit 0, as flanneld does. */
  readonly version: boolean
  /** `--help` was given: print {@link helpText} and exit 0. */
  readonly help: boolean
}

type Kind = 'string' | 'list' | 'int' | 'bool' | 'csv'

interface FlagSpec {
  readonly name: string
  readonly key: keyof AgentCommandOptions
  readonly kind: Kind
  readonly def: string | number | boolean | readonly string[]
  readonly help: string
}

/** Every flag, its option key, kind, flanneld default and help line. */
export const FLAGS: readonly FlagSpec[] = [
  {
    name: 'etcd-endpoints',
    key: 'etcdEndpoints',
    kind: 'csv',
    def: ['http://127.0.0.1:4001', 'http://127.0.0.1:2379'],
    help: 'a comma-delimited list of etcd endpoints',
  },
  {
    name: 'etcd-prefix',
    key: 'etcdPrefix',
    kind: 'string',
    def: '/coreos.com/network',
    help: 'etcd prefix',
  },
  {
    name: 'etcd-keyfile',
    key: 'etcdKeyfile',
    kind: 'string',
    def: '',
    help: 'SSL key file used to secure etcd communication',
  },
  {
    name: 'etcd-certfile',
    key: 'etcdCertfile',
    kind: 'string',
    def: '',
    help: 'SSL certification file used to secure etcd communication',
  },
  {
    name: 'etcd-cafile',
    key: 'etcdCafile',
    kind: 'string',
    def: '',
    help: 'SSL Certificate Authority file used to secure etcd communication',
  },
  {
    name: 'etcd-username',
    key: 'etcdUsername',
    kind: 'string',
    def: '',
    help: 'username for BasicAuth to etcd',
  },
  {
    name: 'etcd-password',
    key: 'etcdPassword',
    kind: 'string',
    def: '',
    help: 'password for BasicAuth to etcd',
  },
  {
    name: 'iface',
    key: 'iface',
    kind: 'list',
    def: [],
    help: 'interface to use (IP or name) for inter-host communication; repeatable',
  },
  {
    name: 'iface-regex',
    key: 'ifaceRegex',
    kind: 'list',
    def: [],
    help: 'regex expression to match the first interface to use (IP or name); repeatable',
  },
  {
    name: 'iface-can-reach',
    key: 'ifaceCanReach',
    kind: 'string',
    def: '',
    help: 'detect the interface to use (IP or name) from the route to this address',
  },
  {
    name: 'public-ip',
    key: 'publicIP',
    kind: 'string',
    def: '',
    help: 'IP accessible by other nodes for inter-host communication',
  },
  {
    name: 'public-ipv6',
    key: 'publicIPv6',
    kind: 'string',
    def: '',
    help: 'IPv6 accessible by other nodes for inter-host communication',
  },
  {
    name: 'subnet-file',
    key: 'subnetFile',
    kind: 'string',
    def: DEFAULT_SUBNET_FILE,
    help: 'filename where env variables (subnet, MTU, ...) will be written to',
  },
  {
    name: 'subnet-lease-renew-margin',
    key: 'subnetLeaseRenewMargin',
    kind: 'int',
    def: 60,
    help: 'subnet lease renewal margin, in minutes, ranging from 1 to 1439',
  },
  {
    name: 'ip-masq',
    key: 'ipMasq',
    kind: 'bool',
    def: false,
    help: 'setup IP masquerade rule for traffic destined outside of overlay network',
  },
  {
    name: 'ip-masq-fully-random-disable',
    key: 'ipMasqFullyRandomDisable',
    kind: 'bool',
    def: false,
    help: 'disable the --random-fully flag of the masquerade rules',
  },
  {
    name: 'iptables-resync',
    key: 'iptablesResync',
    kind: 'int',
    def: 5,
    help: 'resync period for iptables rules, in seconds',
  },
  {
    name: 'iptables-forward-rules',
    key: 'iptablesForwardRules',
    kind: 'bool',
    def: true,
    help: 'add default accept rules to FORWARD chain in iptables',
  },
  {
    name: 'ip-blackhole-route',
    key: 'ipBlackholeRoute',
    kind: 'bool',
    def: false,
    help: 'add a blackhole route for the own subnet, checked every --iptables-resync seconds',
  },
  {
    name: 'kube-subnet-mgr',
    key: 'kubeSubnetMgr',
    kind: 'bool',
    def: false,
    help: 'contact the Kubernetes API for subnet assignment instead of etcd.',
  },
  {
    name: 'kube-api-url',
    key: 'kubeApiUrl',
    kind: 'string',
    def: '',
    help: 'Kubernetes API server URL. Does not need to be specified if flannel is running in a pod.',
  },
  {
    name: 'kubeconfig-file',
    key: 'kubeconfigFile',
    kind: 'string',
    def: '',
    help: 'kubeconfig file location. Does not need to be specified if flannel is running in a pod.',
  },
  {
    name: 'kube-annotation-prefix',
    key: 'kubeAnnotationPrefix',
    kind: 'string',
    def: 'flannel.alpha.coreos.com',
    help: 'Kubernetes annotation prefix. Can contain single slash "/", otherwise it will be appended at the end.',
  },
  {
    name: 'net-config-path',
    key: 'netConfigPath',
    kind: 'string',
    def: '/etc/kube-flannel/net-conf.json',
    help: 'path to the network configuration file',
  },
  {
    name: 'set-node-network-unavailable',
    key: 'setNodeNetworkUnavailable',
    kind: 'bool',
    def: true,
    help: 'set NodeNetworkUnavailable after ready',
  },
  {
    name: 'healthz-ip',
    key: 'healthzIP',
    kind: 'string',
    def: '0.0.0.0',
    help: 'the IP address for healthz server to listen',
  },
  {
    name: 'healthz-port',
    key: 'healthzPort',
    kind: 'int',
    def: 0,
    help: 'the port for healthz server to listen (0 to disable)',
  },
  { name: 'v', key: 'v', kind: 'int', def: 0, help: 'log level verbosity' },
  { name: 'version', key: 'version', kind: 'bool', def: false, help: 'print version and exit' },
]

/** The environment variable of a flag: `FLANNELD_` + name upper-cased, `-` -> `_`. */
export function envName(flag: string): string {
  return `FLANNELD_${flag.toUpperCase().replace(/-/g, '_')}`
}

function formatDefault(spec: FlagSpec): string {
  if (Array.isArray(spec.def)) return spec.def.length === 0 ? 'none' : spec.def.join(',')
  if (spec.def === '') return '""'
  return String(spec.def)
}

function buildCommand(): Command {
  const cmd = new Command('flannel-agent')
    .description(
      'flanneld (etcd mode, or kube mode with --kube-subnet-mgr) built from the @flannel packages. Every flag can also be set ' +
        'with FLANNELD_<FLAG> (upper case, "-" -> "_"), used when the flag is not given.',
    )
    .helpOption(false)
    .configureHelp({ helpWidth: 1000 })
    .allowExcessArguments(false)
    .exitOverride()
    .configureOutput({ writeOut: () => undefined, writeErr: () => undefined })
  cmd.addOption(new Option('-h, --help', 'print this help'))
  for (const spec of FLAGS) {
    const long = spec.name === 'v' ? '-v, --v <level>' : `--${spec.name}`
    const value = spec.kind === 'bool' ? ' [bool]' : spec.kind === 'list' ? ' <value>' : ' <value>'
    const flags = spec.name === 'v' ? long : `${long}${value}`
    const option = new Option(
      flags,
      `${spec.help} (default: ${formatDefault(spec)}; env ${envName(spec.name)})`,
    )
    if (spec.kind === 'list') option.argParser((v: string, prev: string[] = []) => [...prev, v])
    cmd.addOption(option)
  }
  return cmd
}

/** `--help` text: every flag with its default and environment variable. */
export function helpText(): string {
  return buildCommand().helpInformation()
}

/**
 * Go's flag package takes `-name` as well as `--name`; commander wants two
 * dashes for long names.
 */
function normalizeArgs(argv: readonly string[]): string[] {
  return argv.map((arg) => {
    if (!/^-[a-z]/i.test(arg)) return arg
    const name = arg.slice(1).split('=')[0] ?? ''
    return name.length > 1 || arg.includes('=') ? `-${arg}` : arg
  })
}

function parseValue(spec: FlagSpec, raw: unknown, from: string): unknown {
  const bad = (): never => {
    throw new UsageError(`invalid value ${JSON.stringify(raw)} for ${from}: parse error`)
  }
  switch (spec.kind) {
    case 'bool': {
      if (raw === true) return true
      const text = String(raw).toLowerCase()
      if (['1', 't', 'true'].includes(text)) return true
      if (['0', 'f', 'false'].includes(text)) return false
      return bad()
    }
    case 'int': {
      const text = String(raw).trim()
      if (!/^[+-]?\d+$/.test(text)) return bad()
      return Number(text)
    }
    case 'csv':
      return String(raw)
        .split(',')
        .map((s) => s.trim())
        .filter((s) => s !== '')
    case 'list':
      return Array.isArray(raw) ? raw.map(String) : [String(raw)]
    case 'string':
      return String(raw)
  }
}

/**
 * The effective options for a command line (`argv` without the node and
 * script names) and an environment: a flag on the command line wins, else
 * `FLANNELD_<FLAG>` from `env`, else flanneld's default. Environment values of
 * `--iface` and `--iface-regex` are a single entry each (as flanneld's).
 * Throws {@link UsageError} with flanneld's message for unknown flags, bad
 * values and an out-of-range renew margin.
 */
export function optionsFromFlags(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
): AgentCommandOptions {
  const cmd = buildCommand()
  try {
    cmd.parse(normalizeArgs(argv), { from: 'user' })
  } catch (error) {
    if (error instanceof CommanderError) {
      const unknown = /unknown option '([^']+)'/.exec(error.message)
      if (unknown) {
        const flag = unknown[1]!.replace(/^-+/, '-').split('=')[0]!
        throw new UsageError(`flag provided but not defined: ${flag}`)
      }
      const missing = /option '(?:-\w, )?--([\w-]+)[^']*' argument missing/.exec(error.message)
      if (missing) throw new UsageError(`flag needs an argument: -${missing[1]}`)
      throw new UsageError(error.message.replace(/^error: /, ''))
    }
    throw error
  }
  const given = cmd.opts<Record<string, unknown>>()
  const out: Record<string, unknown> = { help: given.help === true }
  for (const spec of FLAGS) {
    const attr = cmd.options.find((o) => o.long === `--${spec.name}`)!.attributeName()
    const cli = given[attr]
    const fromEnv = env[envName(spec.name)]
    if (cli !== undefined) out[spec.key] = parseValue(spec, cli, `flag -${spec.name}`)
    else if (fromEnv !== undefined)
      out[spec.key] = parseValue(spec, fromEnv, `environment variable ${envName(spec.name)}`)
    else out[spec.key] = Array.isArray(spec.def) ? [...(spec.def as string[])] : spec.def
  }
  const options = out as unknown as AgentCommandOptions
  if (options.subnetLeaseRenewMargin < 1 || options.subnetLeaseRenewMargin > 1439) {
    throw new UsageError('Invalid subnet-lease-renew-margin option, out of acceptable range')
  }
  if (options.healthzPort < 0 || options.healthzPort > 65535) {
    throw new UsageError(
      `invalid value "${options.healthzPort}" for flag -healthz-port: out of range`,
    )
  }
  return options
}
