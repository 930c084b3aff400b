import type { DeliveryOptions, EventRecord } from './events.ts'
import { renderEvent } from './events.ts'
import { signatureHeader } from './signing.ts'
import type { Clock } from './state.ts'

export const DELIVERY_MODES = ['auto', 'manual'] as const
/** `auto`: events go out as they happen; `manual`: they wait in the outbox for `deliverOutbox`. */
export type DeliveryMode = (typeof DELIVERY_MODES)[number]

export const DELIVERY_ORDERS = ['fifo', 'reverse', 'shuffle'] as const
export type DeliveryOrder = (typeof DELIVERY_ORDERS)[number]

export interface RetryPolicy {
  /** Attempts per delivery, the first included, until one answers 2xx (default 3). */
  maxAttempts: number
  /** Wait before the 2nd attempt; doubles after each failure (default 50 ms). */
  backoffMs: number
  /** How long one attempt waits for the endpoint's answer (default 10 s). */
  timeoutMs: number
}

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
  private readonly inFlight = new Set<Promise<unknown>>()
  /** Pending sleeps and requests, so `close()` can cut them short. */
  private readonly cancellers = new Set<() => void>()
  private closed = false
  /** Auto mode sends one delivery after another, so arrival order is emission order. */
  private chain: Promise<unknown> = Promise.resolve()
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
      else if (delivery.delayMs > 0) this.track(this.deliver(delivery))
      else this.track(this.enqueueInOrder(delivery))
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
    for (const delivery of ordered) made.push(...(await this.track(this.deliver(delivery))))
    return made
  }

  /** Resolves once no delivery (or retry) is under way. */
  async whenIdle(): Promise<void> {
    while (this.inFlight.size > 0) await Promise.allSettled([...this.inFlight])
  }

  clear(): void {
    this.queue.length = 0
    this.attempts.length = 0
  }

  close(): void {
    this.closed = true
    for (const cancel of this.cancellers) cancel()
    this.cancellers.clear()
  }

  /**
   * Waits for the deliveries before it (their retries included), then sends. A delayed
   * delivery skips this line on purpose: it is meant to arrive after later events.
   */
  private enqueueInOrder(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    const run = this.chain.then(() => this.deliver(delivery))
    this.chain = run.catch(() => undefined)
    return run
  }

  private async deliver(delivery: PendingDelivery): Promise<DeliveryAttempt[]> {
    const made: DeliveryAttempt[] = []
    if (delivery.delayMs > 0) await this.sleep(delivery.delayMs)
    for (let attempt = 1; attempt <= this.retry.maxAttempts; attempt++) {
      if (this.closed) break
      const result = await this.attempt(delivery, attempt)
      made.push(result)
      this.attempts.push(result)
      if (result.ok) break
      if (attempt < this.retry.maxAttempts)
        await this.sleep(this.retry.backoffMs * 2 ** (attempt - 1))
    }
    return made
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
    const controller = new AbortController()
    const timeout = setTimeout(() => controller.abort(), this.retry.timeoutMs)
    const cancel = () => controller.abort()
    this.cancellers.add(cancel)
    try {
      const response = await fetch(delivery.url, {
        method: 'POST',
        headers: {
          accept: '*/*; q=0.5, application/xml',
          'cache-control': 'no-cache',
          'content-type': 'application/json; charset=utf-8',
          'stripe-signature': signature,
          'user-agent': 'Stripe/1.0 (+https://stripe.com/docs/webhooks)',
        },
        body: delivery.payload,
        signal: controller.signal,
      })
      await response.arrayBuffer()
      const ok = response.status >= 200 && response.status < 300
      return { ...base, ok, status: response.status, error: ok ? null : `HTTP ${response.status}` }
    } catch (error) {
      return { ...base, ok: false, status: null, error: describe(error) }
    } finally {
      clearTimeout(timeout)
      this.cancellers.delete(cancel)
    }
  }

  private track<T>(promise: Promise<T>): Promise<T> {
    this.inFlight.add(promise)
    void promise.finally(() => this.inFlight.delete(promise))
    return promise
  }

  private sleep(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer)
        this.cancellers.delete(wake)
        resolve()
      }
      const timer = setTimeout(wake, ms)
      this.cancellers.add(wake)
    })
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

function describe(error: unknown): string {
  if (error instanceof Error) {
    const cause = error.cause instanceof Error ? `: ${error.cause.message}` : ''
    return `${error.name}: ${error.message}${cause}`
  }
  return String(error)
}
