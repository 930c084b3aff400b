import { DeliveryRunner, type PostOutcome, type RetryPolicy } from './delivery-runner.ts'

/** What every notification carries; copies made by `duplicateNext` share `id`. */
export interface Notification {
  readonly id: string
  readonly url: string
  /** The exact bytes sent, the same on every attempt. */
  readonly body: string
}

/**
 * What `attempts` records: the notification (its `id` as `notificationId`), then the
 * attempt's number and time, then how it ended.
 */
export type DeliveryRecord<N extends Notification> = { notificationId: string } & Omit<N, 'id'> & {
    attempt: number
    at: Date
  } & PostOutcome

/** The headers a provider sends with a notification. */
export type NotificationHeaders<N extends Notification> = (
  notification: N,
) => Record<string, string>

/**
 * An IPN outbox: a POST per notification, retried with backoff until a 2xx or
 * `maxAttempts`. Unlike the real providers, notifications go out one after another in the
 * order of the changes, so a test's expectations are deterministic; disorder and duplicates
 * are always something a test asks for (`duplicateNext`, `holdAndReverse`).
 */
export class NotificationOutbox<N extends Notification> {
  readonly attempts: DeliveryRecord<N>[] = []
  private duplicatesLeft = 0
  private holdLeft = 0
  private readonly held: N[] = []
  private readonly runner = new DeliveryRunner(() => this.retry)

  constructor(
    public retry: RetryPolicy,
    private readonly clock: { now(): Date },
    private readonly headers: NotificationHeaders<N>,
  ) {}

  /** Each of the next `count` notifications is delivered twice, back to back. */
  duplicateNext(count: number): void {
    this.duplicatesLeft += count
  }

  /** The next `count` notifications are held, then delivered newest first. */
  holdAndReverse(count: number): void {
    this.holdLeft += count
  }

  /** Notifications held by `holdAndReverse` that are not out yet. */
  get heldBack(): readonly N[] {
    return this.held
  }

  send(notification: N): void {
    const copies = this.duplicatesLeft > 0 ? 2 : 1
    if (this.duplicatesLeft > 0) this.duplicatesLeft -= 1
    const batch = Array.from({ length: copies }, () => notification)
    if (this.holdLeft > 0) {
      this.held.push(...batch)
      this.holdLeft -= 1
      if (this.holdLeft > 0) return
      const released = this.held.splice(0).reverse()
      for (const item of released) this.enqueue(item)
      return
    }
    for (const item of batch) this.enqueue(item)
  }

  /** Resolves once no delivery (or retry) is under way. */
  whenIdle(): Promise<void> {
    return this.runner.whenIdle()
  }

  clear(): void {
    this.attempts.length = 0
    this.held.length = 0
    this.duplicatesLeft = 0
    this.holdLeft = 0
  }

  close(): void {
    this.runner.close()
  }

  private enqueue(notification: N): void {
    void this.runner.track(this.runner.inLine(() => this.deliver(notification)))
  }

  private async deliver(notification: N): Promise<void> {
    await this.runner.retry(
      async (attempt) => {
        const { id, ...sent } = notification
        const at = this.clock.now()
        const outcome = await this.runner.post(notification.url, {
          headers: this.headers(notification),
          body: notification.body,
        })
        const record: DeliveryRecord<N> = { notificationId: id, ...sent, attempt, at, ...outcome }
        return record
      },
      (made) => this.attempts.push(made),
    )
  }
}
