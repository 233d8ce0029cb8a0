import type { Lease, LeaseAttrs } from '../lease/types.js'
import type { Logger } from '../logger.js'
import type { Network, PrepareOptions, PreparedNetwork } from './types.js'

/** Takes back one change made by an activation, with an API client that is open while it runs. */
export type UndoStep<Api> = (api: Api) => Promise<void>

/** What {@link preparedWithUndo} activates with. */
export interface UndoableActivation<Api> {
  /** The client `prepare` opened (open for the whole activation). */
  readonly api: Api
  /**
   * Registers how to take back a change. Register before making the change:
   * an abort or a lost answer may have made it all the same, so a step
   * checks that the change is there before undoing it.
   */
  readonly undo: (step: UndoStep<Api>) => void
  /** The activation's signal. */
  readonly signal?: AbortSignal | undefined
}

/** What {@link preparedWithUndo} is built from, by a backend's `prepare`. */
export interface UndoablePreparation<Api, N extends Network> {
  /** The attributes to publish. */
  readonly attrs: LeaseAttrs
  /** The API client `prepare` used; closed when `activate` ends or on `abort`. */
  readonly api: Api
  /** Opens a fresh client, for undoing after `activate` closed the first. */
  readonly reopen: () => Api
  /** Closes a client (never rejects through to the caller: a failure is logged). */
  readonly close: (api: Api) => void | Promise<void>
  /** Sets up with the lease (the own route ...), registering each change's undo first. */
  readonly activate: (lease: Lease, with_: UndoableActivation<Api>) => Promise<N>
  /** Where undo failures are logged. */
  readonly logger: Logger
}

/**
 * A `PreparedNetwork` for backends whose changes live in an API (the cloud
 * route tables): `activate` keeps a log of how to take back each change,
 * runs it (newest first) when the activation fails, and keeps it for
 * `abort`, which the lease owner calls when a later start-up step fails; so
 * an abort after `activate` leaves the route table as it found it. The
 * client `prepare` opened is closed once, after `activate` or `abort`; an
 * undo after `activate` opens and closes a fresh one. A failed step is
 * logged and the others still run.
 *
 * @example
 * ```ts
 * return preparedWithUndo({
 *   attrs: { publicIP }, api, reopen: () => makeApi(), close: (a) => a.close(), logger,
 *   activate: async (lease, { api, undo, signal }) => {
 *     undo(async (a) => { if (await a.hasRoute(lease.subnet)) await a.deleteRoute(lease.subnet) })
 *     await api.createRoute(lease.subnet, signal)
 *     return new MyNetwork(lease)
 *   },
 * })
 * ```
 */
export function preparedWithUndo<Api, N extends Network>(
  p: UndoablePreparation<Api, N>,
): PreparedNetwork {
  let closed = false
  let kept: UndoStep<Api>[] = []
  const closeFirst = async (): Promise<void> => {
    if (closed) return
    closed = true
    await closeQuietly(p.api)
  }
  const closeQuietly = async (api: Api): Promise<void> => {
    try {
      await p.close(api)
    } catch (err) {
      p.logger.warn({ err }, 'could not close the API client')
    }
  }
  const runSteps = async (steps: UndoStep<Api>[], api: Api): Promise<void> => {
    for (const step of steps.reverse()) {
      await step(api).catch((err: unknown) => {
        p.logger.warn({ err }, 'could not undo a change of a failed start')
      })
    }
  }
  return {
    attrs: p.attrs,
    activate: async (lease: Lease, opts: PrepareOptions = {}): Promise<N> => {
      if (closed) throw new Error('activate after abort, or a second activate')
      const steps: UndoStep<Api>[] = []
      try {
        const network = await p.activate(lease, {
          api: p.api,
          undo: (step) => void steps.push(step),
          signal: opts.signal,
        })
        kept = steps
        return network
      } catch (error) {
        await runSteps(steps, p.api)
        throw error
      } finally {
        await closeFirst()
      }
    },
    abort: async (): Promise<void> => {
      await closeFirst()
      const steps = kept
      kept = []
      if (steps.length === 0) return
      let api: Api
      try {
        api = p.reopen()
      } catch (err) {
        p.logger.warn({ err }, 'could not open an API client to undo the start')
        return
      }
      try {
        await runSteps(steps, api)
      } finally {
        await closeQuietly(api)
      }
    },
  }
}
