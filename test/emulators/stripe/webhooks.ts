import { DeliveryRunner, type RetryPolicy } from '../shared/delivery-runner.ts'
import type { DeliveryOptions, EventRecord } from './events.ts'
import { renderEvent } from './events.ts'
import { signatureHeader } from './signing.ts'
import type { Clock } from './state.ts'

export const DELIVERY_MODES = ['auto', 'manual'] as const
/** `auto`: events go out as they happen; `manual`: they wait in the outbox for `deliverOutbox`. */
export type DeliveryMode = (typeof DELIVERY_MODES)[number]

export const DELIVERY_ORDERS = ['fifo', 'reverse', 'shuffle'] as const
export type DeliveryOrder = (typeof DELIVERY_ORDERS)[number]

export type { RetryPolicy } from '../shared/delivery-runner.ts'

/** Defaults: 3 attempts, 50 ms before the 2nd (doubling), 10 s per attempt. */
export const DEFAULT_RETRY_POLICY: RetryPolicy = {
  maxAttempts: 3,
  backoffMs: 50,
  timeoutMs: 10_000,
}

/** One event on its way to one endpoint. Copies of a duplicated event share `eventId`. */
export interface PendingDelivery {
  readonly id: string
  readonly eventId: string
  readonly type: string
  readonly url: string
  /** The exact bytes sent (Stripe's pretty-printed JSON), the same on every attempt. */
  readonly payload: string
  readonly delayMs: number
  readonly timestampOffsetSeconds: number
}

export interface DeliveryAttempt {
  deliveryId: string
  eventId: string
  type: string
  url: string
  attempt: number
  ok: boolean
  /** The endpoint's HTTP status, or null when the request failed (refused, timed out). */
  status: number | null
  error: string | null
  /** The `Stripe-Signature` header sent. */
  signature: string
  at: Date
}

interface Endpoint {
  url: string
  enabledEvents: readonly string[]
}

/**
 * Delivers events to the webhook endpoint the way Stripe does: a POST of the event JSON
 * signed with `Stripe-Signature`, retried with backoff until a 2xx or `maxAttempts`.
 * Tests can hold events back (`manual`), then deliver them reversed or shuffled,
 * duplicated, late, or with an old signature timestamp. Unlike Stripe, `auto` mode sends
 * in emission order, one delivery at a time, so a test's expectations are deterministic;
 * disorder is always something a test asks for.
 */
export class WebhookOutbox {
  mode: DeliveryMode
  retry: RetryPolicy
  readonly attempts: DeliveryAttempt[] = []
  private endpoint: Endpoint | null = null
  private readonly queue: PendingDelivery[] = []
  /** Auto mode sends one delivery after another, so arrival order is emission order. */
  private readonly runner = new DeliveryRunner(() => this.retry)
  private deliverySeq = 0

  constructor(
    private readonly secret: string,
    private readonly clock: Clock,
    mode: DeliveryMode,
    retry: RetryPolicy,
  ) {
    this.mode = mode
    this.retry = retry
  }

  setEndpoint(url: string | null, enabledEvents: readonly string[] = ['*']): void {
    this.endpoint = url === null ? null : { url, enabledEvents }
  }

  get endpointUrl(): string | null {
    return this.endpoint?.url ?? null
  }

  /** The EventLog listener: queues (or sends) the event if the endpoint wants its type. */
  accept(event: EventRecord, options: DeliveryOptions): void {
    const endpoint = this.endpoint
    if (endpoint === null || !wants(endpoint, event.type)) return
    event.pendingWebhooks = 1
    const payload = JSON.stringify(renderEvent(event), null, 2)
    const copies = 1 + Math.max(0, options.duplicate ?? 0)
    for (let copy = 0; copy < copies; copy++) {
      const delivery: PendingDelivery = {
        id: `whdel_${++this.deliverySeq}`,
        eventId: event.id,
        type: event.type,
        url: endpoint.url,
        payload,
        delayMs: options.delayMs ?? 0,
        timestampOffsetSeconds: options.timestampOffsetSeconds ?? 0,
      }
      if (this.mode === 'manual') this.queue.push(delivery)
      else if (delivery.delayMs > 0) void this.runner.track(this.deliver(delivery))
      else void this.runner.track(this.runner.inLine(() => this.deliver(delivery)))
    }
  }

  /** Deliveries waiting for `deliverQueued` (manual mode). */
  pending(): readonly PendingDelivery[] {
    return this.queue
  }

  /**
   * Sends everything queued, one delivery after another (each with its retries), in the
   * given order; `duplicate` sends each that many extra times. Resolves with the attempts.
   */
  async deliverQueued(
    options: { order?: DeliveryOrder; duplicate?: number } = {},
  ): Promise<DeliveryAttempt[]> {
    const taken = this.queue.splice(0)
    const expanded = taken.flatMap((delivery) =>
      Array.from({ length: 1 + Math.max(0, options.duplicate ?? 0) }, () => delivery),
    )
    const ordered = arrange(expanded, options.order ?? 'fifo')
    const made: DeliveryAttempt[] = []
    for (const delivery of ordered) made.push(...(await this.runner.track(this.deliver(delivery))))
    return made
  }

  /** Resolves once no delivery (or retry) is under way. */
  whenIdle(): Promise<void> {
    return this.runner.whenIdle()
  }

  clear(): void {
    this.queue.length = 0
    this.attempts.length = 0
  }

  close(): void {
    this.runner.close()
  }

  /**
   * A delayed delivery waits first and skips the line on purpose: it is meant to arrive
   * after later events; the others wait for the deliveries before them (see `accept`).
   */
  private async deliver(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    if (delivery.delayMs > 0) await this.runner.sleep(delivery.delayMs)
    return this.runner.retry(
      (attempt) => this.attempt(delivery, attempt),
      (made) => this.attempts.push(made),
    )
  }

  private async attempt(delivery: PendingDelivery, attempt: number): Promise<DeliveryAttempt> {
    const timestamp =
      Math.floor(this.clock.now().getTime() / 1000) + delivery.timestampOffsetSeconds
    // Stripe signs every attempt anew, with the time of that attempt.
    const signature = signatureHeader(delivery.payload, this.secret, timestamp)
    const base = {
      deliveryId: delivery.id,
      eventId: delivery.eventId,
      type: delivery.type,
      url: delivery.url,
      attempt,
      signature,
      at: this.clock.now(),
    }
    const outcome = await this.runner.post(delivery.url, {
      headers: {
        accept: '*/*; q=0.5, application/xml',
        'cache-control': 'no-cache',
        'content-type': 'application/json; charset=utf-8',
        'stripe-signature': signature,
        'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
      },
      body: delivery.payload,
    })
    return { ...base, ...outcome }
  }
}

function wants(endpoint: Endpoint, type: string): boolean {
  return endpoint.enabledEvents.some((enabled) => enabled === '*' || enabled === type)
}

function arrange<T>(items: T[], order: DeliveryOrder): T[] {
  switch (order) {
    case 'fifo':
      return items
    case 'reverse':
      return [...items].reverse()
    case 'shuffle': {
      const shuffled = [...items]
      for (let i = shuffled.length - 1; i > 0; i--) {
        const j = Math.floor(Math.random() * (i + 1))
        const held = shuffled[i]!
        shuffled[i] = shuffled[j]!
        shuffled[j] = held
      }
      return shuffled
    }
  }
}
