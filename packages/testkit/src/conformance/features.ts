import { it, type TestFunction } from 'vitest'

/**
 * Behaviours some registries do not have by design. A registry names the
 * ones it lacks, with the reason, in {@link ConformanceOptions.unsupported};
 * the cases that need them are then skipped, the reason in their title and
 * printed once, rather than deleted.
 */
export type RegistryFeature =
  /** The registry picks subnets from SubnetMin..SubnetMax (PublicIP reuse, previous subnet, random pick, exhaustion, defaults). */
  | 'allocation'
  /** Renewal rewrites the lease, and watchers see it again as `added`. */
  | 'renewal'
  /** `releaseLease` removes the lease: watchers see `removed`, renewing it fails with `LeaseNotFoundError`. */
  | 'release'

/** Options of `describeRegistryConformance`. */
export interface ConformanceOptions {
  /** Features the registry lacks, each with the reason (printed with the skipped cases). */
  readonly unsupported?: Partial<Record<RegistryFeature, string>> | undefined
}

/** `it`, or a skipped `it` naming the reason when one of `needs` is unsupported. */
export type CaseFn = (needs: readonly RegistryFeature[], title: string, fn: TestFunction) => void

/** A {@link CaseFn} for the given options; prints each reason once. */
export function caseFn(options: ConformanceOptions = {}): CaseFn {
  const printed = new Set<string>()
  return (needs, title, fn) => {
    const missing = needs.find((f) => options.unsupported?.[f] !== undefined)
    if (missing === undefined) {
      it(title, fn)
      return
    }
    const reason = options.unsupported![missing]!
    if (!printed.has(missing)) {
      printed.add(missing)
      console.warn(`registry conformance: cases needing ${missing} skipped: ${reason}`)
    }
    it.skip(`${title} (skipped, no ${missing}: ${reason})`, fn)
  }
}
