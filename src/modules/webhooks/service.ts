import { AppError, notFound, validationError } from '../../core/errors.ts'
import { isSettled } from '../../core/payment-state.ts'
import { adminAccess, type Scope } from '../../core/principal.ts'
import type { Payment } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { NormalizedEvent, RawWebhook } from '../../gateways/gateway.ts'
import { gatewayContext, gatewayFor } from '../../gateways/registry.ts'
import { lockInvoicesOfPaymentAhead } from '../invoices/repository.ts'
import { retryAfterLateFailure } from '../payments/automatic.ts'
import { applyPaymentUpdate } from '../payments/gateway-updates.ts'
import { lockPayment, lockPaymentByTracking } from '../payments/repository.ts'
import type { PaymentDeps } from '../payments/service.ts'
import { applyBillingObject } from '../stripe-sync/service.ts'
import { environmentOfTenant, markInboundEventHandled, recordInboundEvent } from './repository.ts'

export interface HandledEvent {
  id: string
  type: string
  outcome: string
}

/**
 * The inbound webhook pipeline every gateway shares: the raw body is verified by
 * the gateway (signature, or a re-fetch from the provider for those that sign
 * nothing), each event is recorded once by `(gateway, event_id)`, and applied to
 * its payment under the payment's row lock in the same transaction. A duplicate
 * delivery finds the event recorded and changes nothing; an unknown tenant,
 * environment or gateway is 404; a bad signature is 400 and changes nothing.
 *
 * @example
 * const handled = await handleInboundWebhook(deps, 'sandbox', tenantId, environmentId, { body, headers })
 */
export async function handleInboundWebhook(
  deps: PaymentDeps,
  gatewayName: string,
  tenantId: string,
  environmentId: string,
  raw: RawWebhook,
): Promise<HandledEvent[]> {
  const environment = await environmentOfTenant(deps.db, tenantId, environmentId)
  if (!environment) throw notFound('environment', `${tenantId}/${environmentId}`)
  const scope: Scope = { tenantId, environmentId }
  let gateway: ReturnType<typeof gatewayFor>
  try {
    gateway = gatewayFor(gatewayName)
  } catch {
    throw notFound('gateway', gatewayName)
  }
  // Payrail's own rails (the balance, offline payments) settle inside its transactions: no
  // provider reports on them. Their path exists (DESIGN names the platform's) and says so.
  if (!gateway.parseWebhook) {
    throw new AppError(
      'not_supported',
      `The ${gateway.name} rail settles inside Payrail and takes no webhooks`,
      { gateway: gateway.name },
    )
  }
  const ctx = await gatewayContext(deps, scope, gateway.name).catch(() => {
    throw notFound('gateway connection', gatewayName)
  })
  const parse = gateway.parseWebhook.bind(gateway)
  const parsed = await malformedAs400(deps, gateway.name, () => parse(ctx, raw))
  if (!parsed.ok) {
    // 502: the provider could not be asked to confirm it; a 5xx makes it send the notification again.
    const code =
      parsed.status === 404
        ? 'not_found'
        : parsed.status === 401
          ? 'unauthorized'
          : parsed.status === 502
            ? 'gateway_error'
            : 'validation_error'
    throw new AppError(code, `Webhook refused: ${parsed.reason}`, { gateway: gateway.name })
  }
  // Providers' event ids are short; one past this is not a provider's, and could not be kept
  // in the deduplicating index (PostgreSQL refuses an index entry over about 2.7 KB).
  const long = parsed.events.find((event) => event.eventId.length > MAX_EVENT_ID_LENGTH)
  if (long) {
    throw validationError(
      `Webhook refused: its event id is longer than ${MAX_EVENT_ID_LENGTH} characters`,
      { gateway: gateway.name },
    )
  }
  const handled: HandledEvent[] = []
  for (const event of parsed.events) {
    const outcome = await applyEvent(deps, scope, gateway.name, event)
    handled.push({ id: event.eventId, type: event.type, outcome })
  }
  return handled
}

const MAX_EVENT_ID_LENGTH = 255

/**
 * A verified notification whose fields are not of the types its provider documents (a
 * string where a number belongs, a fraction of a cent) makes the gateway's reading of it
 * throw a TypeError or RangeError: 400, nothing applied, rather than a 500 a provider would
 * take for an outage. Only the reading: an error while applying it stays a 500, so the
 * provider sends the report again.
 */
async function malformedAs400<T>(
  deps: PaymentDeps,
  gateway: string,
  read: () => Promise<T>,
): Promise<T> {
  try {
    return await read()
  } catch (error) {
    if (
      !(error instanceof TypeError || error instanceof RangeError || error instanceof SyntaxError)
    )
      throw error
    deps.logger.warn({ err: error, gateway }, 'malformed webhook refused')
    throw new AppError(
      'validation_error',
      `Webhook refused: a field is malformed (${error.message})`,
      {
        gateway,
      },
    )
  }
}

async function applyEvent(
  deps: PaymentDeps,
  scope: Scope,
  gateway: string,
  event: NormalizedEvent,
): Promise<string> {
  return inTransaction(deps.db, async (trx): Promise<string> => {
    const fresh = await recordInboundEvent(trx, {
      tenant_id: scope.tenantId,
      environment_id: scope.environmentId,
      gateway,
      event_id: event.eventId,
      event_type: event.type,
      payload: JSON.stringify(event.payload),
    })
    if (!fresh) return 'duplicate'
    if (event.billingObject) {
      const outcome = await applyBillingObject(trx, scope, event.billingObject, deps.clock)
      await markInboundEventHandled(
        trx,
        scope.environmentId,
        gateway,
        event.eventId,
        outcome,
        deps.clock.now(),
      )
      return outcome
    }
    // An update that moves money onto or off the payment's invoices locks them after the
    // payment, in the round trip of the payment's lock (and its attempts: `lockPayment`).
    // Not before the event is known to be fresh: a duplicate delivery locks nothing.
    const { status, refund } = event.update
    if (event.target.paymentId && (refund || (status && isSettled(status)))) {
      lockInvoicesOfPaymentAhead(trx, scope.environmentId, event.target.paymentId)
    }
    const locked =
      (event.target.paymentId
        ? await lockPayment(trx, scope.environmentId, event.target.paymentId)
        : undefined) ??
      (event.target.trackingId
        ? await lockPaymentByTracking(trx, scope.environmentId, gateway, event.target.trackingId)
        : undefined)
    let outcome: string
    if (!locked || (locked.payment_gateway !== null && locked.payment_gateway !== gateway)) {
      outcome = 'unknown_payment'
      deps.logger.warn(
        { gateway, event_id: event.eventId, target: event.target },
        'webhook for an unknown payment',
      )
    } else if (endsFromAnotherObject(locked, event)) {
      // BitPay sends an expired invoice's IPN with the payment's id (its orderId): an invoice
      // made before a retry replaced it must not fail the payment whose invoice is still open.
      outcome = 'other_object'
      deps.logger.warn(
        {
          gateway,
          event_id: event.eventId,
          payment_id: locked.id,
          tracking_id: locked.gateway_tracking_id,
          reported_tracking_id: event.target.trackingId,
        },
        'webhook ends a gateway object the payment no longer tracks; ignored',
      )
    } else {
      const result = await applyPaymentUpdate(
        trx,
        scope,
        locked,
        event.update,
        { cause: 'webhook', causeId: event.eventId },
        deps,
      )
      outcome = result.outcome
      if (
        locked.payment_method_type === 'CARD' &&
        locked.payment_status !== 'FAILED' &&
        result.payment.payment_status === 'FAILED'
      )
        // A charge the provider had answered, reported failed: the invoice's next attempt.
        await retryAfterLateFailure(trx, deps, adminAccess(scope), result.payment)
    }
    await markInboundEventHandled(
      trx,
      scope.environmentId,
      gateway,
      event.eventId,
      outcome,
      deps.clock.now(),
    )
    return outcome
  })
}

/**
 * Whether `event` would fail or cancel `payment` from a gateway object other than the one
 * the payment tracks (`NormalizedEvent.target.trackedObject`) and the one that holds its
 * money (`gateway_payment_id`).
 */
function endsFromAnotherObject(payment: Payment, event: NormalizedEvent): boolean {
  const { trackingId, trackedObject } = event.target
  const status = event.update.status
  return (
    trackedObject === true &&
    trackingId !== undefined &&
    // A payment that tracks nothing (its start's answer was lost) has no other object: the
    // one reported is the only one it may have, and its expiry ends it.
    payment.gateway_tracking_id !== null &&
    payment.gateway_tracking_id !== trackingId &&
    // Coins in flight on the crypto invoice whose answer was lost, while the payment tracks
    // the one a retry made: that invoice's end (unconfirmed, underpaid) is the payment's.
    payment.gateway_payment_id !== trackingId &&
    (status === 'FAILED' || status === 'CANCELLED')
  )
}
