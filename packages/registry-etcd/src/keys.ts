/** The flanneld etcd v3 key layout under one prefix (spec: core.md section 4.1). */
export interface KeyLayout {
  /** The cleaned prefix, e.g. `/coreos.com/network`. */
  readonly prefix: string
  /** `<prefix>/config`. */
  readonly config: string
  /** `<prefix>/subnets/`: every lease key starts with it. */
  readonly subnets: string
  /** `<prefix>/subnets/<subnet key>`. */
  lease(subnetKey: string): string
  /** The subnet key basename of a full lease key, or undefined when the key is not under `subnets/`. */
  subnetKeyOf(key: string): string | undefined
}

/** Joins like Go's `path.Join` for our purposes: duplicate and trailing slashes disappear. */
export function joinKey(...parts: string[]): string {
  const joined = parts.filter((p) => p !== '').join('/')
  const collapsed = joined.replace(/\/{2,}/g, '/')
  return collapsed.length > 1 ? collapsed.replace(/\/$/, '') : collapsed
}

/** The key layout for `prefix` (default flanneld's `/coreos.com/network`). */
export function keyLayout(prefix: string): KeyLayout {
  const clean = joinKey(prefix)
  const subnets = `${joinKey(clean, 'subnets')}/`
  return {
    prefix: clean,
    config: joinKey(clean, 'config'),
    subnets,
    lease: (subnetKey) => `${subnets}${subnetKey}`,
    subnetKeyOf: (key) => (key.startsWith(subnets) ? key.slice(subnets.length) : undefined),
  }
}
