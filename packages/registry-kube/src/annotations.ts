import {
  formatIp4,
  formatIp6,
  isIp4,
  isIp6,
  parseIp4,
  parseIp6,
  type LeaseAttrs,
  type Logger,
} from '@flannel/core'
import { encodeBackendData } from '@flannel/core/registry'
import { AnnotationPrefixError } from './errors.js'

/** flanneld's default `--kube-annotation-prefix`. */
export const DEFAULT_ANNOTATION_PREFIX = 'flannel.alpha.coreos.com'

/** The annotation keys flanneld reads and writes on a Node (spec: kube.md section 3.2). */
export interface AnnotationKeys {
  /** The normalised prefix, e.g. `flannel.alpha.coreos.com/`. */
  readonly prefix: string
  /** `kube-subnet-manager`: `"true"` marks a node as a flannel peer. */
  readonly subnetKubeManaged: string
  /** `backend-data`. */
  readonly backendData: string
  /** `backend-v6-data`. */
  readonly backendV6Data: string
  /** `backend-type`. */
  readonly backendType: string
  /** `public-ip`. */
  readonly publicIP: string
  /** `public-ipv6`. */
  readonly publicIPv6: string
  /** `node-public-ip` (operator: replaces `--public-ip` at start-up). */
  readonly nodePublicIP: string
  /** `node-public-ipv6`. */
  readonly nodePublicIPv6: string
  /** `public-ip-overwrite` (operator: published as `public-ip` verbatim). */
  readonly publicIPOverwrite: string
  /** `public-ipv6-overwrite`. */
  readonly publicIPv6Overwrite: string
}

// flanneld's pattern; like Go's regexp.MatchString it is not anchored at the start.
const PREFIX_RE = /(?:[a-z0-9_-]+\.)+[a-z0-9_-]+\/(?:[a-z0-9_-]+-)?$/

/**
 * The annotation keys for a prefix, normalised as flanneld does (spec:
 * kube.md section 3.1): at most one `/`; none means `/` is appended; a
 * prefix ending in neither `/` nor `-` gets a `-`; the result must look like
 * `fqdn/[name-]`.
 *
 * @example
 * ```ts
 * annotationKeys('flannel.alpha.coreos.com').backendType // 'flannel.alpha.coreos.com/backend-type'
 * annotationKeys('example.com/net').publicIP // 'example.com/net-public-ip'
 * ```
 * @throws AnnotationPrefixError with flanneld's message for a prefix it rejects.
 */
export function annotationKeys(prefix: string = DEFAULT_ANNOTATION_PREFIX): AnnotationKeys {
  const slashes = prefix.split('/').length - 1
  if (slashes > 1) {
    throw new AnnotationPrefixError(prefix, 'subnet/kube: prefix can contain at most single slash')
  }
  let p = slashes === 0 ? `${prefix}/` : prefix
  if (!p.endsWith('/') && !p.endsWith('-')) p += '-'
  if (!PREFIX_RE.test(p)) {
    throw new AnnotationPrefixError(
      prefix,
      'subnet/kube: prefix must be in a format: fqdn/[0-9a-z-_]*',
    )
  }
  return Object.freeze({
    prefix: p,
    subnetKubeManaged: `${p}kube-subnet-manager`,
    backendData: `${p}backend-data`,
    backendV6Data: `${p}backend-v6-data`,
    backendType: `${p}backend-type`,
    publicIP: `${p}public-ip`,
    publicIPv6: `${p}public-ipv6`,
    nodePublicIP: `${p}node-public-ip`,
    nodePublicIPv6: `${p}node-public-ipv6`,
    publicIPOverwrite: `${p}public-ip-overwrite`,
    publicIPv6Overwrite: `${p}public-ipv6-overwrite`,
  })
}

/** Node annotations as the API returns them (absent when the node has none). */
export type Annotations = Readonly<Record<string, string>> | undefined

/** What {@link planAnnotations} decided. */
export interface AnnotationPlan {
  /** True when flanneld would send a patch (step 4 of spec kube.md section 4). */
  readonly changed: boolean
  /**
   * The annotations to set (only those whose value differs from the node's),
   * empty when `changed` is false.
   */
  readonly set: Readonly<Record<string, string>>
  /** The overwrite annotations that replaced a published address (for the log). */
  readonly overridden: readonly { readonly key: string; readonly value: string }[]
}

/** Go `net.IP.String()` of an IPv4 text (`0.0.0.0` when unset). */
function ip4Text(text: string | undefined): string {
  return text !== undefined && isIp4(text) ? formatIp4(parseIp4(text)) : '0.0.0.0'
}

/**
 * The annotations flanneld writes for `attrs` on a node that currently has
 * `current` (spec: kube.md section 4, steps 4 and 5; section 3.3): the same
 * keys, the same value bytes (Go's canonical IP text, compact JSON, `null`
 * for missing data), the same rules for the vxlan/IPv6 special cases and for
 * the `public-ip-overwrite(v6)` annotations, and the same test of whether to
 * patch at all. A node without annotations is handled (flanneld panics).
 *
 * @example
 * ```ts
 * const plan = planAnnotations(annotationKeys(), undefined, {
 *   publicIP: '192.0.2.10',
 *   backendType: 'vxlan',
 *   backendData: { VNI: 1, VtepMAC: '0a:58:0a:f4:01:00' },
 * })
 * plan.set['flannel.alpha.coreos.com/backend-data'] // '{"VNI":1,"VtepMAC":"0a:58:0a:f4:01:00"}'
 * ```
 * @throws InvalidArgumentError when the backend data cannot be written as JSON.
 */
export function planAnnotations(
  keys: AnnotationKeys,
  current: Annotations,
  attrs: LeaseAttrs,
): AnnotationPlan {
  const now = current ?? {}
  const type = attrs.backendType ?? ''
  const bd = encodeBackendData(attrs.backendData, 'backendData')
  const v6bd = encodeBackendData(attrs.backendV6Data, 'backendV6Data')
  const pub4 = ip4Text(attrs.publicIP)
  const pub6 =
    attrs.publicIPv6 !== undefined && attrs.publicIPv6 !== '' && isIp6(attrs.publicIPv6)
      ? formatIp6(parseIp6(attrs.publicIPv6))
      : undefined
  const marker = now[keys.subnetKubeManaged] !== 'true'
  const over4 = now[keys.publicIPOverwrite] ?? ''
  const over6 = now[keys.publicIPv6Overwrite] ?? ''
  const changed4 =
    now[keys.backendData] !== bd ||
    now[keys.backendType] !== type ||
    now[keys.publicIP] !== pub4 ||
    marker ||
    (over4 !== '' && over4 !== pub4)
  const changed6 =
    pub6 !== undefined &&
    (now[keys.backendV6Data] !== v6bd ||
      now[keys.backendType] !== type ||
      now[keys.publicIPv6] !== pub6 ||
      marker ||
      (over6 !== '' && over6 !== pub6))
  if (!changed4 && !changed6) return { changed: false, set: {}, overridden: [] }

  const next: Record<string, string> = { ...now }
  const overridden: { key: string; value: string }[] = []
  next[keys.backendType] = type
  if ((type === 'vxlan' && bd !== 'null') || type !== 'vxlan') {
    next[keys.backendData] = bd
    if (over4 !== '') {
      if (now[keys.publicIP] !== over4) {
        overridden.push({ key: keys.publicIPOverwrite, value: over4 })
        next[keys.publicIP] = over4
      }
    } else {
      next[keys.publicIP] = pub4
    }
  }
  const v6 =
    (type === 'vxlan' && v6bd !== 'null') ||
    (type === 'wireguard' && v6bd !== 'null' && pub6 !== undefined) ||
    (type === 'host-gw' && pub6 !== undefined) ||
    (type === 'extension' && pub6 !== undefined)
  if (v6) {
    next[keys.backendV6Data] = v6bd
    if (over6 !== '') {
      if (now[keys.publicIPv6] !== over6) {
        overridden.push({ key: keys.publicIPv6Overwrite, value: over6 })
        next[keys.publicIPv6] = over6
      }
    } else {
      // flanneld writes attrs.PublicIPv6.String(), "<nil>" when unset: never
      // reached for vxlan without an IPv6 address (the backend has none then).
      next[keys.publicIPv6] = pub6 ?? '<nil>'
    }
  }
  next[keys.subnetKubeManaged] = 'true'
  const set: Record<string, string> = {}
  for (const [key, value] of Object.entries(next)) if (now[key] !== value) set[key] = value
  return { changed: true, set, overridden }
}

/** Logs the overwrite annotations that replaced a published address, with flanneld's text. */
export function logOverrides(logger: Logger, plan: AnnotationPlan, keys: AnnotationKeys): void {
  for (const { key, value } of plan.overridden) {
    const family = key === keys.publicIPOverwrite ? 'ip' : 'ipv6'
    logger.info(
      { annotation: key, value },
      `Overriding public ${family} with '${value}' from node annotation '${key}'`,
    )
  }
}

/**
 * The body of the strategic-merge patch flanneld sends to
 * `nodes/<n>/status` for a plan: `{"metadata":{"annotations":{...}}}` with
 * the changed keys in Go's sorted map order.
 */
export function annotationPatchBody(set: Readonly<Record<string, string>>): string {
  const sorted: Record<string, string> = {}
  for (const key of Object.keys(set).sort()) sorted[key] = set[key]!
  return JSON.stringify({ metadata: { annotations: sorted } })
}
