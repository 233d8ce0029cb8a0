import { Ip4Net, Ip6Net } from '@flannel/core'
import { describe, expect, it } from 'vitest'
import {
  forwardChain,
  masqueradeChain,
  nftablesDeleteScript,
  nftablesScript,
} from '../src/backend/index.js'

const N = Ip4Net.parse('10.5.0.0/16')
const S = Ip4Net.parse('10.5.34.0/24')

describe('flanneld rule texts (core.md 9)', () => {
  it('masquerade chain, in order, with and without --random-fully', () => {
    const chain = masqueradeChain({ network: N, subnet: S }, true)
    expect(chain).toEqual({
      table: 'nat',
      chain: 'FLANNEL-POSTRTG',
      jump: '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG',
      rules: [
        '-A FLANNEL-POSTRTG -m mark --mark 0x4000/0x4000 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.5.34.0/24 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.5.0.0/16 -d 10.5.34.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.34.0/24 -m comment --comment "flanneld masq" -j RETURN',
        '-A FLANNEL-POSTRTG -s 10.5.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
        '-A FLANNEL-POSTRTG ! -s 10.5.0.0/16 -d 10.5.0.0/16 -m comment --comment "flanneld masq" -j MASQUERADE --random-fully',
      ],
    })
    expect(
      masqueradeChain({ network: N, subnet: S }, false).rules.some((r) => r.includes('random')),
    ).toBe(false)
    const v6 = masqueradeChain(
      { network: Ip6Net.parse('fd00:5::/56'), subnet: Ip6Net.parse('fd00:5:0:22::/64') },
      false,
    )
    expect(v6.rules[4]).toBe(
      '-A FLANNEL-POSTRTG -s fd00:5::/56 ! -d ff00::/8 -m comment --comment "flanneld masq" -j MASQUERADE',
    )
  })

  it('forward chain', () => {
    expect(forwardChain(N)).toEqual({
      table: 'filter',
      chain: 'FLANNEL-FWD',
      jump: '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD',
      rules: [
        '-A FLANNEL-FWD -s 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
        '-A FLANNEL-FWD -d 10.5.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT',
      ],
    })
  })

  it('nftables script: one transaction, flushed chains, rule 4 as flanneld writes it', () => {
    expect(
      nftablesScript({
        network: N,
        subnet: S,
        masquerade: true,
        forward: false,
        fullyRandom: false,
      }),
    ).toBe(
      [
        'add table ip flannel-ipv4 { comment "rules for flannel-ipv4" ; }',
        'add chain ip flannel-ipv4 postrtg { type nat hook postrouting priority srcnat ; comment "chain to manage traffic masquerading by flannel" ; }',
        'flush chain ip flannel-ipv4 postrtg',
        'add rule ip flannel-ipv4 postrtg meta mark 0x00004000 return',
        'add rule ip flannel-ipv4 postrtg ip saddr 10.5.34.0/24 ip daddr 10.5.0.0/16 return',
        'add rule ip flannel-ipv4 postrtg ip saddr 10.5.0.0/16 ip daddr 10.5.34.0/24 return',
        'add rule ip flannel-ipv4 postrtg ip saddr != 10.5.34.0/24 ip daddr 10.5.0.0/16 return',
        'add rule ip flannel-ipv4 postrtg ip saddr 10.5.0.0/16 ip daddr != 224.0.0.0/4 masquerade',
        'add rule ip flannel-ipv4 postrtg ip saddr != 10.5.0.0/16 ip daddr 10.5.0.0/16 masquerade',
        '',
      ].join('\n'),
    )
    const v6 = nftablesScript({
      network: Ip6Net.parse('fd00:5::/56'),
      subnet: Ip6Net.parse('fd00:5:0:22::/64'),
      masquerade: false,
      forward: true,
      fullyRandom: true,
    })
    expect(v6).toContain('add rule ip6 flannel-ipv6 forward ip6 saddr fd00:5::/56 accept')
    expect(v6).not.toContain('postrtg')
    expect(nftablesDeleteScript(6)).toBe(
      'add table ip6 flannel-ipv6\ndelete table ip6 flannel-ipv6\n',
    )
  })
})
