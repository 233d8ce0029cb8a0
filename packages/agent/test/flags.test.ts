import { describe, expect, it } from 'vitest'
import {
  FLAGS,
  envName,
  helpText,
  optionsFromFlags,
  type AgentCommandOptions,
} from '@flannel/agent'

const defaults = optionsFromFlags([], {})

// One row per flag: a command line, the same value from the environment, and the effective option.
const rows: {
  flag: string
  argv: string[]
  env: string
  key: keyof AgentCommandOptions
  value: unknown
}[] = [
  {
    flag: 'etcd-endpoints',
    argv: ['--etcd-endpoints=http://127.0.0.1:23790,http://127.0.0.1:23791'],
    env: 'http://127.0.0.1:23790,http://127.0.0.1:23791',
    key: 'etcdEndpoints',
    value: ['http://127.0.0.1:23790', 'http://127.0.0.1:23791'],
  },
  {
    flag: 'etcd-prefix',
    argv: ['--etcd-prefix', '/vxlan/network'],
    env: '/vxlan/network',
    key: 'etcdPrefix',
    value: '/vxlan/network',
  },
  {
    flag: 'etcd-keyfile',
    argv: ['--etcd-keyfile=/k.pem'],
    env: '/k.pem',
    key: 'etcdKeyfile',
    value: '/k.pem',
  },
  {
    flag: 'etcd-certfile',
    argv: ['--etcd-certfile=/c.pem'],
    env: '/c.pem',
    key: 'etcdCertfile',
    value: '/c.pem',
  },
  {
    flag: 'etcd-cafile',
    argv: ['--etcd-cafile=/ca.pem'],
    env: '/ca.pem',
    key: 'etcdCafile',
    value: '/ca.pem',
  },
  {
    flag: 'etcd-username',
    argv: ['--etcd-username=flannel'],
    env: 'flannel',
    key: 'etcdUsername',
    value: 'flannel',
  },
  {
    flag: 'etcd-password',
    argv: ['--etcd-password=s3cret'],
    env: 's3cret',
    key: 'etcdPassword',
    value: 's3cret',
  },
  { flag: 'iface', argv: ['--iface=eth1'], env: 'eth1', key: 'iface', value: ['eth1'] },
  {
    flag: 'iface-regex',
    argv: ['--iface-regex=^veth'],
    env: '^veth',
    key: 'ifaceRegex',
    value: ['^veth'],
  },
  {
    flag: 'iface-can-reach',
    argv: ['--iface-can-reach=192.0.2.1'],
    env: '192.0.2.1',
    key: 'ifaceCanReach',
    value: '192.0.2.1',
  },
  {
    flag: 'public-ip',
    argv: ['--public-ip=198.51.100.4'],
    env: '198.51.100.4',
    key: 'publicIP',
    value: '198.51.100.4',
  },
  {
    flag: 'public-ipv6',
    argv: ['--public-ipv6=2001:db8::4'],
    env: '2001:db8::4',
    key: 'publicIPv6',
    value: '2001:db8::4',
  },
  {
    flag: 'subnet-file',
    argv: ['--subnet-file=/tmp/s.env'],
    env: '/tmp/s.env',
    key: 'subnetFile',
    value: '/tmp/s.env',
  },
  {
    flag: 'subnet-lease-renew-margin',
    argv: ['--subnet-lease-renew-margin=30'],
    env: '30',
    key: 'subnetLeaseRenewMargin',
    value: 30,
  },
  { flag: 'ip-masq', argv: ['--ip-masq'], env: 'true', key: 'ipMasq', value: true },
  {
    flag: 'ip-masq-fully-random-disable',
    argv: ['--ip-masq-fully-random-disable'],
    env: '1',
    key: 'ipMasqFullyRandomDisable',
    value: true,
  },
  {
    flag: 'iptables-resync',
    argv: ['--iptables-resync=9'],
    env: '9',
    key: 'iptablesResync',
    value: 9,
  },
  {
    flag: 'iptables-forward-rules',
    argv: ['--iptables-forward-rules=false'],
    env: 'false',
    key: 'iptablesForwardRules',
    value: false,
  },
  {
    flag: 'version',
    argv: ['--version'],
    env: 'true',
    key: 'version',
    value: true,
  },
  {
    flag: 'ip-blackhole-route',
    argv: ['--ip-blackhole-route'],
    env: 'true',
    key: 'ipBlackholeRoute',
    value: true,
  },
  {
    flag: 'kube-subnet-mgr',
    argv: ['--kube-subnet-mgr'],
    env: 'true',
    key: 'kubeSubnetMgr',
    value: true,
  },
  {
    flag: 'kube-api-url',
    argv: ['--kube-api-url=https://127.0.0.1:6443'],
    env: 'https://127.0.0.1:6443',
    key: 'kubeApiUrl',
    value: 'https://127.0.0.1:6443',
  },
  {
    flag: 'kubeconfig-file',
    argv: ['--kubeconfig-file=/kc'],
    env: '/kc',
    key: 'kubeconfigFile',
    value: '/kc',
  },
  {
    flag: 'kube-annotation-prefix',
    argv: ['--kube-annotation-prefix=example.org'],
    env: 'example.org',
    key: 'kubeAnnotationPrefix',
    value: 'example.org',
  },
  {
    flag: 'net-config-path',
    argv: ['--net-config-path=/n.json'],
    env: '/n.json',
    key: 'netConfigPath',
    value: '/n.json',
  },
  {
    flag: 'set-node-network-unavailable',
    argv: ['--set-node-network-unavailable=false'],
    env: 'false',
    key: 'setNodeNetworkUnavailable',
    value: false,
  },
  {
    flag: 'healthz-ip',
    argv: ['--healthz-ip=127.0.0.1'],
    env: '127.0.0.1',
    key: 'healthzIP',
    value: '127.0.0.1',
  },
  {
    flag: 'healthz-port',
    argv: ['--healthz-port=8471'],
    env: '8471',
    key: 'healthzPort',
    value: 8471,
  },
  { flag: 'v', argv: ['-v', '3'], env: '3', key: 'v', value: 3 },
]

describe('optionsFromFlags', () => {
  it('has a row for every flag', () => {
    expect(rows.map((r) => r.flag).sort()).toEqual(FLAGS.map((f) => f.name).sort())
  })

  it.each(rows)('--$flag sets $key', ({ argv, key, value }) => {
    const options = optionsFromFlags(argv, {})
    expect(options[key]).toEqual(value)
    expect(value).not.toEqual(defaults[key])
  })

  it.each(rows)('$flag from FLANNELD_ environment', ({ flag, env, key, value }) => {
    expect(optionsFromFlags([], { [envName(flag)]: env })[key]).toEqual(value)
  })

  it('the command line wins over the environment', () => {
    const o = optionsFromFlags(['--etcd-prefix=/cli'], { FLANNELD_ETCD_PREFIX: '/env' })
    expect(o.etcdPrefix).toBe('/cli')
  })

  it("has flanneld's defaults", () => {
    expect(defaults).toMatchObject({
      etcdEndpoints: ['http://127.0.0.1:4001', 'http://127.0.0.1:2379'],
      etcdPrefix: '/coreos.com/network',
      iface: [],
      ifaceRegex: [],
      subnetFile: '/run/flannel/subnet.env',
      subnetLeaseRenewMargin: 60,
      ipMasq: false,
      iptablesResync: 5,
      iptablesForwardRules: true,
      healthzIP: '0.0.0.0',
      healthzPort: 0,
      v: 0,
    })
  })

  it('takes Go-style single-dash flags and repeats --iface in order', () => {
    const o = optionsFromFlags(['-iface=eth0', '-iface', 'eth1', '-etcd-prefix=/p', '-v=2'], {})
    expect(o.iface).toEqual(['eth0', 'eth1'])
    expect(o.etcdPrefix).toBe('/p')
    expect(o.v).toBe(2)
  })

  it.each([
    [['--nope'], 'flag provided but not defined: -nope'],
    [
      ['--subnet-lease-renew-margin=0'],
      'Invalid subnet-lease-renew-margin option, out of acceptable range',
    ],
    [
      ['--subnet-lease-renew-margin=1440'],
      'Invalid subnet-lease-renew-margin option, out of acceptable range',
    ],
    [['--healthz-port=abc'], 'invalid value "abc" for flag -healthz-port: parse error'],
    [['--ip-masq=maybe'], 'invalid value "maybe" for flag -ip-masq: parse error'],
  ])('rejects %j', (argv, msg) => {
    expect(() => optionsFromFlags(argv, {})).toThrow(msg)
  })

  it('rejects a bad environment value naming the variable', () => {
    expect(() => optionsFromFlags([], { FLANNELD_IPTABLES_RESYNC: 'x' })).toThrow(
      'invalid value "x" for environment variable FLANNELD_IPTABLES_RESYNC: parse error',
    )
  })
})

describe('--help', () => {
  const text = helpText()
  it.each(FLAGS.map((f) => [f.name, f]))('lists --%s with its default', (_name, spec) => {
    const line = text.split('\n').find((l) => l.includes(`--${spec.name} `))
    expect(line, `no help line for --${spec.name}`).toBeDefined()
    const def = Array.isArray(spec.def)
      ? spec.def.length === 0
        ? 'none'
        : spec.def.join(',')
      : spec.def === ''
        ? '""'
        : String(spec.def)
    expect(text).toContain(`(default: ${def}; env ${envName(spec.name)})`)
  })
})
