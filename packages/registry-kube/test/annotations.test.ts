import { describe, expect, it } from 'vitest'
import { Ip4Net, Ip6Net, isFlannelError, parseNetworkConfig } from '@flannel/core'
import {
  annotationKeys,
  annotationPatchBody,
  nodeToLease,
  ownLeaseSubnets,
  ownNodeCidrs,
  planAnnotations,
  type NodeObject,
} from '@flannel/registry-kube'

const P = 'flannel.alpha.coreos.com/'
const keys = annotationKeys()
const vxlanAttrs = {
  publicIP: '192.0.2.10',
  backendType: 'vxlan',
  backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' },
}

function thrown(fn: () => unknown): Error {
  try {
    fn()
  } catch (err) {
    return err as Error
  }
  throw new Error('expected a throw')
}

describe('annotationKeys (flanneld newAnnotations)', () => {
  it.each([
    ['flannel.alpha.coreos.com', 'flannel.alpha.coreos.com/backend-type'],
    ['flannel.alpha.coreos.com/', 'flannel.alpha.coreos.com/backend-type'],
    ['flannel.alpha.coreos.com/prefix', 'flannel.alpha.coreos.com/prefix-backend-type'],
    ['flannel.alpha.coreos.com/prefix-', 'flannel.alpha.coreos.com/prefix-backend-type'],
    ['org.com/9', 'org.com/9-backend-type'],
    ['A.b.c', 'A.b.c/backend-type'], // the pattern is not anchored at the start
  ])('%s gives %s', (prefix, key) => {
    expect(annotationKeys(prefix).backendType).toBe(key)
  })

  it.each(['org', 'org/', 'org/prefix', 'org.COM', 'org.com/PREFIX'])(
    'rejects %s with flanneld message',
    (prefix) => {
      const err = thrown(() => annotationKeys(prefix))
      expect(isFlannelError(err, 'KUBE_ANNOTATION_PREFIX')).toBe(true)
      expect(err.message).toBe('subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*')
    },
  )

  it('rejects more than one slash', () => {
    expect(thrown(() => annotationKeys('a.b/c/d')).message).toBe(
      'subnet/kube: prefix can contain at most single slash',
    )
  })

  it('has every key of spec section 3.2', () => {
    expect(Object.values(annotationKeys()).sort()).toEqual(
      [
        '',
        'kube-subnet-manager',
        'backend-data',
        'backend-v6-data',
        'backend-type',
        'public-ip',
        'public-ipv6',
        'node-public-ip',
        'node-public-ipv6',
        'public-ip-overwrite',
        'public-ipv6-overwrite',
      ]
        .map((k) => P + k)
        .sort(),
    )
  })
})

describe('planAnnotations (flanneld AcquireLease steps 4-5)', () => {
  it('writes vxlan annotations with flanneld bytes on a node without any annotations', () => {
    const plan = planAnnotations(keys, undefined, vxlanAttrs)
    expect(plan.changed).toBe(true)
    expect(plan.set).toEqual({
      [`${P}backend-type`]: 'vxlan',
      [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}',
      [`${P}public-ip`]: '192.0.2.10',
      [`${P}kube-subnet-manager`]: 'true',
    })
  })

  it('sends nothing when every compared value is equal', () => {
    const first = planAnnotations(keys, { other: 'x' }, vxlanAttrs)
    const again = planAnnotations(keys, { other: 'x', ...first.set }, vxlanAttrs)
    expect(again).toEqual({ changed: false, set: {}, overridden: [] })
  })

  it('patches only the keys that differ', () => {
    const now = planAnnotations(keys, undefined, vxlanAttrs).set
    const plan = planAnnotations(keys, now, { ...vxlanAttrs, publicIP: '192.0.2.11' })
    expect(plan.set).toEqual({ [`${P}public-ip`]: '192.0.2.11' })
  })

  it('host-gw and udp publish null data; udp an empty backend-type', () => {
    expect(
      planAnnotations(keys, {}, { publicIP: '192.0.2.1', backendType: 'host-gw' }).set,
    ).toEqual({
      [`${P}backend-type`]: 'host-gw',
      [`${P}backend-data`]: 'null',
      [`${P}public-ip`]: '192.0.2.1',
      [`${P}kube-subnet-manager`]: 'true',
    })
    expect(planAnnotations(keys, {}, { publicIP: '192.0.2.1' }).set).toEqual({
      [`${P}backend-type`]: '',
      [`${P}backend-data`]: 'null',
      [`${P}public-ip`]: '192.0.2.1',
      [`${P}kube-subnet-manager`]: 'true',
    })
  })

  it('vxlan IPv6-only leaves the IPv4 keys out and writes the v6 ones', () => {
    const plan = planAnnotations(
      keys,
      {},
      {
        publicIP: '0.0.0.0',
        publicIPv6: '2001:DB8:0::0010',
        backendType: 'vxlan',
        backendV6Data: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:01' },
      },
    )
    expect(plan.set).toEqual({
      [`${P}backend-type`]: 'vxlan',
      [`${P}backend-v6-data`]: '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:01"}',
      [`${P}public-ipv6`]: '2001:db8::10',
      [`${P}kube-subnet-manager`]: 'true',
    })
  })

  it('host-gw writes backend-v6-data null only with a public IPv6', () => {
    const plan = planAnnotations(
      keys,
      {},
      {
        publicIP: '192.0.2.1',
        publicIPv6: '2001:db8::1',
        backendType: 'host-gw',
      },
    )
    expect(plan.set[`${P}backend-v6-data`]).toBe('null')
    expect(plan.set[`${P}public-ipv6`]).toBe('2001:db8::1')
  })

  it('copies public-ip-overwrite verbatim, logs the override, and keeps patching while it differs', () => {
    const current = { [`${P}public-ip-overwrite`]: '198.51.100.7' }
    const plan = planAnnotations(keys, current, vxlanAttrs)
    expect(plan.set[`${P}public-ip`]).toBe('198.51.100.7')
    expect(plan.overridden).toEqual([{ key: `${P}public-ip-overwrite`, value: '198.51.100.7' }])
    // flanneld's test stays true while the overwrite differs from the detected IP.
    const again = planAnnotations(keys, { ...current, ...plan.set }, vxlanAttrs)
    expect(again.changed).toBe(true)
    expect(again.set).toEqual({})
    expect(again.overridden).toEqual([])
  })

  it('a custom prefix changes every key', () => {
    const plan = planAnnotations(annotationKeys('example.com/net'), {}, vxlanAttrs)
    expect(Object.keys(plan.set).sort()).toEqual([
      'example.com/net-backend-data',
      'example.com/net-backend-type',
      'example.com/net-kube-subnet-manager',
      'example.com/net-public-ip',
    ])
  })

  it('the patch body is annotations only, keys sorted', () => {
    expect(annotationPatchBody({ b: '2', a: '1' })).toBe(
      '{"metadata":{"annotations":{"a":"1","b":"2"}}}',
    )
  })
})

const v4 = { enableIPv4: true, enableIPv6: false }
const dual = { enableIPv4: true, enableIPv6: true }
function node(
  annotations: Record<string, string> | undefined,
  spec: NodeObject['spec'],
): NodeObject {
  return { metadata: { name: 'n1', annotations }, spec }
}
const published = {
  [`${P}kube-subnet-manager`]: 'true',
  [`${P}backend-type`]: 'vxlan',
  [`${P}backend-data`]: '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}',
  [`${P}public-ip`]: '192.0.2.10',
}

describe('nodeToLease (peers)', () => {
  it('turns a flannel node into a lease with decoded backend data and no expiry', () => {
    const r = nodeToLease(node(published, { podCIDR: '10.244.1.0/24' }), keys, v4)
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.lease.subnet.toString()).toBe('10.244.1.0/24')
    expect(r.lease.ipv6Subnet).toBeUndefined()
    expect(r.lease.attrs).toEqual(vxlanAttrs)
    expect(r.lease.expiration.getTime()).toBe(0)
  })

  it('clears host bits of a podCIDR, as Go net.ParseCIDR does', () => {
    const r = nodeToLease(node(published, { podCIDR: '10.244.1.7/24' }), keys, v4)
    expect(r.ok && r.lease.subnet.toString()).toBe('10.244.1.0/24')
  })

  it.each([
    [
      'no marker',
      { ...published, [`${P}kube-subnet-manager`]: 'false' },
      { podCIDR: '10.244.1.0/24' },
      /kube-subnet-manager/,
    ],
    [
      'no public-ip',
      { ...published, [`${P}public-ip`]: '' },
      { podCIDR: '10.244.1.0/24' },
      /^invalid IP address format$/,
    ],
    [
      'an IPv6 public-ip',
      { ...published, [`${P}public-ip`]: '2001:db8::1' },
      { podCIDR: '10.244.1.0/24' },
      /^invalid IPv4 address format$/,
    ],
    ['no podCIDR', published, {}, /^invalid CIDR address: $/],
    [
      'only an IPv6 podCIDR',
      published,
      { podCIDR: 'fd00::/64', podCIDRs: ['fd00::/64'] },
      /^missing IPv4 address on n.Spec.PodCIDRs$/,
    ],
    [
      'three podCIDRs',
      published,
      { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00::/64', '10.1.0.0/24'] },
      /pod cidrs should be IPv4\/IPv6 only or dualstack/,
    ],
  ])('skips a node with %s', (_what, annotations, spec, reason) => {
    const r = nodeToLease(node(annotations, spec), keys, v4)
    expect(r.ok).toBe(false)
    if (!r.ok) expect(r.reason).toMatch(reason)
  })

  it('skips a node without annotations at all', () => {
    expect(nodeToLease(node(undefined, { podCIDR: '10.244.1.0/24' }), keys, v4).ok).toBe(false)
  })

  it('dual-stack: takes the first CIDR of each family and needs public-ipv6', () => {
    const spec = { podCIDR: '10.244.1.0/24', podCIDRs: ['10.244.1.0/24', 'fd00:1::/64'] }
    expect(nodeToLease(node(published, spec), keys, dual).ok).toBe(false)
    const r = nodeToLease(
      node(
        { ...published, [`${P}public-ipv6`]: '2001:db8::10', [`${P}backend-v6-data`]: 'null' },
        spec,
      ),
      keys,
      dual,
    )
    expect(r.ok).toBe(true)
    if (!r.ok) return
    expect(r.lease.ipv6Subnet?.toString()).toBe('fd00:1::/64')
    expect(r.lease.attrs.publicIPv6).toBe('2001:db8::10')
    expect(r.lease.attrs.backendV6Data).toBeUndefined()
  })
})

describe('ownNodeCidrs and ownLeaseSubnets (own node)', () => {
  const config = parseNetworkConfig(
    '{"Network":"10.244.0.0/16","IPv6Network":"fd00::/48","EnableIPv6":true}',
    {
      check: false,
    },
  )

  it('uses podCIDR when podCIDRs is empty; the last CIDR of a family wins', () => {
    expect(ownNodeCidrs(node({}, { podCIDR: '10.244.3.0/24' }), 'n1').ipv4?.toString()).toBe(
      '10.244.3.0/24',
    )
    const c = ownNodeCidrs(
      node({}, { podCIDR: '10.244.3.0/24', podCIDRs: ['10.244.3.0/24', '10.244.4.0/24'] }),
      'n1',
    )
    expect(c.ipv4?.toString()).toBe('10.244.4.0/24')
  })

  it('names the CIDR, the network and the node when the network does not contain it', () => {
    const err = thrown(() => ownLeaseSubnets(config, { ipv4: Ip4Net.parse('10.9.0.0/24') }, 'n1'))
    expect(isFlannelError(err, 'KUBE_POD_CIDR_INVALID')).toBe(true)
    expect(err.message).toBe(
      'subnet "10.244.0.0/16" specified in the flannel net config doesn\'t contain "10.9.0.0/24" PodCIDR of the "n1" node',
    )
    const err6 = thrown(() => ownLeaseSubnets(config, { ipv6: Ip6Net.parse('fd01::/64') }, 'n1'))
    expect(err6.message).toBe(
      'subnet "fd00::/48" specified in the flannel net config doesn\'t contain "fd01::/64" IPv6 PodCIDR of the "n1" node',
    )
  })

  it('a missing Network contains nothing (flanneld shows 0.0.0.0/0)', () => {
    const none = parseNetworkConfig('{}', { check: false })
    expect(none.network).toBeUndefined()
    const err = thrown(() => ownLeaseSubnets(none, { ipv4: Ip4Net.parse('10.244.1.0/24') }, 'n1'))
    expect(err.message).toContain('subnet "0.0.0.0/0" specified')
  })

  it('a podCIDR wider than the network is refused; a family without CIDR stays empty', () => {
    expect(() => ownLeaseSubnets(config, { ipv4: Ip4Net.parse('10.0.0.0/8') }, 'n1')).toThrow(
      /doesn't contain/,
    )
    const { subnet, ipv6Subnet } = ownLeaseSubnets(
      config,
      { ipv6: Ip6Net.parse('fd00:0:0:5::/64') },
      'n1',
    )
    expect(subnet.isEmpty).toBe(true)
    expect(ipv6Subnet?.toString()).toBe('fd00:0:0:5::/64')
  })

  it('rejects more than two and unparsable CIDRs with flanneld text', () => {
    const three = node(
      {},
      { podCIDR: 'a', podCIDRs: ['10.244.1.0/24', 'fd00::/64', '10.1.0.0/24'] },
    )
    expect(thrown(() => ownNodeCidrs(three, 'n1')).message).toBe(
      'node "n1" pod cidrs should be IPv4/IPv6 only or dualstack',
    )
    expect(thrown(() => ownNodeCidrs(node({}, { podCIDR: '10.244.1.0' }), 'n1')).message).toBe(
      'invalid CIDR address: 10.244.1.0',
    )
  })
})
