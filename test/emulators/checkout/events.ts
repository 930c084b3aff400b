import type { JsonObject } from './json.ts'
import { renderEventData } from './payments.ts'
import type { CheckoutState, EmittedEvent } from './state.ts'

/** A webhook body as Checkout.com sends it: `{id: 'evt_…', type, version, created_on, data, _links}`. */
export function renderWebhookEvent(state: CheckoutState, event: EmittedEvent): JsonObject {
  return {
    id: event.id,
    type: event.type,
    version: '1.0.33',
    created_on: event.createdOn.toISOString(),
    data: renderEventData(event.type, event.payment, event.action),
    _links: {
      self: { href: `${state.baseUrl}/workflows/events/${event.id}` },
      subject: { href: `${state.baseUrl}/workflows/events/subject/${event.payment.id}` },
      payment: { href: `${state.baseUrl}/payments/${event.payment.id}` },
    },
  }
}
