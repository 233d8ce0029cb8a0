import type { Ip4Net, Ip6Net } from '@flannel/core'

/** Which IP version a rule set is for. */
export type IpVersion = 4 | 6

/** The networks the masquerade and forward rules are built from. */
export interface RuleNetworks {
  /** `N`: the whole pod network. */
  readonly network: Ip4Net | Ip6Net
  /** `S`: this host's lease subnet. */
  readonly subnet: Ip4Net | Ip6Net
}

/** One iptables chain owned by flannel, the jump into it and its rules, in `iptables-save` syntax. */
export interface IptablesChain {
  /** `nat` or `filter`. */
  readonly table: 'nat' | 'filter'
  /** `FLANNEL-POSTRTG` or `FLANNEL-FWD`. */
  readonly chain: string
  /** The rule in the built-in chain that jumps here, e.g. `-A POSTROUTING ... -j FLANNEL-POSTRTG`. */
  readonly jump: string
  /** The chain's rules in order, each `-A <chain> ...`. */
  readonly rules: readonly string[]
}

const MASQ = '-m comment --comment "flanneld masq"'
const FWD = '-m comment --comment "flanneld forward"'

function multicast(version: IpVersion): string {
  return version === 4 ? '224.0.0.0/4' : 'ff00::/8'
}

function versionOf(net: Ip4Net | Ip6Net): IpVersion {
  return net.toString().includes(':') ? 6 : 4
}

/**
 * flanneld's masquerade chain `FLANNEL-POSTRTG` in table `nat` (core.md 9.1),
 * exactly as `iptables-save` prints it. `fullyRandom` appends `--random-fully`.
 */
export function masqueradeChain(nets: RuleNetworks, fullyRandom: boolean): IptablesChain {
  const n = nets.network.toString()
  const s = nets.subnet.toString()
  const random = fullyRandom ? ' --random-fully' : ''
  const c = '-A FLANNEL-POSTRTG'
  return {
    table: 'nat',
    chain: 'FLANNEL-POSTRTG',
    jump: `-A POSTROUTING ${MASQ} -j FLANNEL-POSTRTG`,
    rules: [
      `${c} -m mark --mark 0x4000/0x4000 ${MASQ} -j RETURN`,
      `${c} -s ${s} -d ${n} ${MASQ} -j RETURN`,
      `${c} -s ${n} -d ${s} ${MASQ} -j RETURN`,
      `${c} ! -s ${n} -d ${s} ${MASQ} -j RETURN`,
      `${c} -s ${n} ! -d ${multicast(versionOf(nets.network))} ${MASQ} -j MASQUERADE${random}`,
      `${c} ! -s ${n} -d ${n} ${MASQ} -j MASQUERADE${random}`,
    ],
  }
}

/** flanneld's forward chain `FLANNEL-FWD` in table `filter` (core.md 9.1). */
export function forwardChain(network: Ip4Net | Ip6Net): IptablesChain {
  const n = network.toString()
  return {
    table: 'filter',
    chain: 'FLANNEL-FWD',
    jump: `-A FORWARD ${FWD} -j FLANNEL-FWD`,
    rules: [`-A FLANNEL-FWD -s ${n} ${FWD} -j ACCEPT`, `-A FLANNEL-FWD -d ${n} ${FWD} -j ACCEPT`],
  }
}

/** The nftables table flannel owns for an IP version: `ip flannel-ipv4` or `ip6 flannel-ipv6`. */
export function nftTable(version: IpVersion): {
  readonly family: 'ip' | 'ip6'
  readonly name: string
} {
  return version === 4
    ? { family: 'ip', name: 'flannel-ipv4' }
    : { family: 'ip6', name: 'flannel-ipv6' }
}

/** What goes into flannel's nftables table. */
export interface NftablesRules extends RuleNetworks {
  /** Fill chain `postrtg` (masquerade). */
  readonly masquerade: boolean
  /** Fill chain `forward`. */
  readonly forward: boolean
  /** Append `fully-random` to the masquerade rules. */
  readonly fullyRandom: boolean
}

/**
 * An `nft -f` script that creates (or flushes and refills) flannel's table
 * for one IP version in a single transaction (core.md 9.2).
 */
export function nftablesScript(rules: NftablesRules): string {
  const version = versionOf(rules.network)
  const { family, name } = nftTable(version)
  const ip = family
  const n = rules.network.toString()
  const s = rules.subnet.toString()
  const random = rules.fullyRandom ? ' fully-random' : ''
  const lines = [`add table ${family} ${name} { comment "rules for ${name}" ; }`]
  if (rules.masquerade) {
    const chain = `${family} ${name} postrtg`
    lines.push(
      `add chain ${chain} { type nat hook postrouting priority srcnat ; comment "chain to manage traffic masquerading by flannel" ; }`,
      `flush chain ${chain}`,
      `add rule ${chain} meta mark 0x00004000 return`,
      `add rule ${chain} ${ip} saddr ${s} ${ip} daddr ${n} return`,
      `add rule ${chain} ${ip} saddr ${n} ${ip} daddr ${s} return`,
      `add rule ${chain} ${ip} saddr != ${s} ${ip} daddr ${n} return`,
      `add rule ${chain} ${ip} saddr ${n} ${ip} daddr != ${multicast(version)} masquerade${random}`,
      `add rule ${chain} ${ip} saddr != ${n} ${ip} daddr ${n} masquerade${random}`,
    )
  }
  if (rules.forward) {
    const chain = `${family} ${name} forward`
    lines.push(
      `add chain ${chain} { type filter hook forward priority filter ; comment "chain to accept flannel traffic" ; }`,
      `flush chain ${chain}`,
      `add rule ${chain} ${ip} saddr ${n} accept`,
      `add rule ${chain} ${ip} daddr ${n} accept`,
    )
  }
  return `${lines.join('\n')}\n`
}

/** An `nft -f` script that deletes flannel's table for one IP version, present or not. */
export function nftablesDeleteScript(version: IpVersion): string {
  const { family, name } = nftTable(version)
  // "add" first so that "delete" never fails on a missing table (nft < 1.0.8 has no "destroy").
  return `add table ${family} ${name}\ndelete table ${family} ${name}\n`
}
