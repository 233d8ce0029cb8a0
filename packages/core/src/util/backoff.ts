/**
 * Delay before retry number `attempt` (0-based): `initial` doubled per
 * attempt up to `max`, with "equal jitter" (half fixed, half random), so
 * many clients retrying at once spread out and none hot-loops.
 *
 * @example
 * ```ts
 * backoffDelay(0, Math.random, 100, 5_000) // 50..100
 * backoffDelay(10, Math.random, 100, 5_000) // 2500..5000
 * ```
 */
export function backoffDelay(
  attempt: number,
  random: () => number,
  initial: number,
  max: number,
): number {
  const base = Math.min(max, initial * 2 ** Math.min(attempt, 30))
  return Math.round(base / 2 + (base / 2) * random())
}
