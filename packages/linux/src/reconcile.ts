import type { LeaseEvent, NetworkEvent } from '@flannel/core'
import type { Observable, Subscriber } from 'rxjs'
import { SerialQueue } from './serial.js'
import type { HostNetwork, HostNetworkNotification, NotificationKind } from './types.js'

/** How a {@link ReconcileLoop} watches the host. */
export interface ReconcileLoopOptions {
  /** Where notifications come from. */
  readonly host: HostNetwork
  /** Which kinds of host notifications to subscribe to. */
  readonly notificationKinds: readonly NotificationKind[]
  /** Text of the warning emitted when host notifications fail. */
  readonly notificationsLostMessage: string
  /** Period of the full check that repairs whatever notifications missed. */
  readonly checkIntervalMs: number
}

/**
 * The run loop shared by kernel backends (vxlan, host-gw) that keep host state
 * in line with the lease table: lease batches and repair checks go through one
 * {@link SerialQueue}, host notifications schedule a check, a periodic timer
 * checks anyway, and nothing is emitted once the loop has stopped.
 *
 * Subclasses supply the backend's own logic: {@link ReconcileLoop.applyBatch},
 * {@link ReconcileLoop.onNotification} and {@link ReconcileLoop.check}.
 */
export abstract class ReconcileLoop {
  /** Serialises every host change this loop makes. */
  protected readonly queue = new SerialQueue()
  /** True once the loop has stopped (unsubscribed, or the lease stream ended). */
  protected stopped = false
  private repairTimer: NodeJS.Timeout | undefined
  private checkTimer: NodeJS.Timeout | undefined

  /**
   * @param out - where the loop's events go; completed or errored with the lease stream.
   * @param options - what to watch and how often to check.
   */
  constructor(
    private readonly out: Subscriber<NetworkEvent>,
    private readonly options: ReconcileLoopOptions,
  ) {}

  /** Starts the loop on `events`; the returned function stops it and releases everything. */
  start(events: Observable<LeaseEvent[]>): () => void {
    const { host, notificationKinds, notificationsLostMessage, checkIntervalMs } = this.options
    const notifications = host.notifications(notificationKinds).subscribe({
      next: (n) => this.onNotification(n),
      error: (error: unknown) =>
        this.emit({ type: 'warning', message: notificationsLostMessage, error }),
    })
    const leases = events.subscribe({
      next: (batch) => void this.queue.run(() => this.applyBatch(batch)),
      error: (error: unknown) => {
        this.stop()
        this.out.error(error)
      },
      complete: () => {
        void this.queue.run(async () => {
          this.stop()
          this.out.complete()
        })
      },
    })
    this.checkTimer = setInterval(() => this.scheduleCheck(0), checkIntervalMs)
    return () => {
      this.stop()
      notifications.unsubscribe()
      leases.unsubscribe()
    }
  }

  /** Emits `event` unless the loop has stopped. */
  protected emit(event: NetworkEvent): void {
    if (!this.stopped) this.out.next(event)
  }

  /** Queues a reporting check after `delayMs`, unless one is already pending. */
  protected scheduleCheck(delayMs: number): void {
    if (this.stopped || this.repairTimer) return
    this.repairTimer = setTimeout(() => {
      this.repairTimer = undefined
      void this.queue.run(() => this.check(true))
    }, delayMs)
  }

  /** Applies one batch of lease events to the host (runs on the queue). */
  protected abstract applyBatch(batch: readonly LeaseEvent[]): Promise<void>

  /** Reacts to one host notification, typically by calling {@link ReconcileLoop.scheduleCheck}. */
  protected abstract onNotification(n: HostNetworkNotification): void

  /** Compares the host with the wanted state and repairs it; `report` says whether to emit what was fixed. */
  protected abstract check(report: boolean): Promise<void>

  private stop(): void {
    this.stopped = true
    clearInterval(this.checkTimer)
    clearTimeout(this.repairTimer)
    this.repairTimer = undefined
  }
}
