/**
 * The fast-check seed of a property test: `FC_SEED` from the environment
 * when set (to replay a failing run), else a fresh random one. Printed as
 * `fc seed=<n>` so that every run, failing or not, can be reproduced with
 * `FC_SEED=<n> npx vitest run <file>`.
 *
 * @example
 * ```ts
 * fc.assert(property, { seed: propertySeed('own-lease'), numRuns: 200 })
 * ```
 * @throws Error when `FC_SEED` is not an integer.
 */
export function propertySeed(name: string): number {
  const fromEnv = process.env.FC_SEED
  const seed =
    fromEnv !== undefined && fromEnv !== '' ? Number(fromEnv) : Math.floor(Math.random() * 2 ** 31)
  if (!Number.isSafeInteger(seed)) throw new Error(`FC_SEED must be an integer, got ${fromEnv}`)
  console.log(`${name}: fc seed=${seed} (FC_SEED=${seed} replays this run)`)
  return seed
}
