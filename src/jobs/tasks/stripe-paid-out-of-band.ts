import { gatewayContext } from '../../gateways/registry.ts'
import { markInvoicePaidOutOfBand } from '../../gateways/stripe/stripe.billing.ts'
import type { PaymentDeps } from '../../modules/payments/service.ts'
import { stringFields } from '../payload.ts'

export const STRIPE_PAID_OUT_OF_BAND = 'stripe_invoice_paid_out_of_band'

export interface OutOfBandJob {
  tenantId: string
  environmentId: string
  stripeInvoiceId: string
}

/**
 * Tells Stripe that an invoice it issued was paid through another Payrail rail, so
 * Stripe stops collecting it. Throwing lets graphile-worker retry with backoff.
 */
export async function markStripeInvoicePaid(
  deps: PaymentDeps,
  payload: unknown,
): Promise<'marked' | 'already_paid' | 'voided'> {
  const job = parseJob(payload)
  const ctx = await gatewayContext(
    deps,
    { tenantId: job.tenantId, environmentId: job.environmentId },
    'stripe',
  )
  const outcome = await markInvoicePaidOutOfBand(ctx, job.stripeInvoiceId)
  if (outcome === 'voided') {
    deps.logger.error(
      { stripe_invoice_id: job.stripeInvoiceId, environment_id: job.environmentId },
      'Stripe voided an invoice Payrail was paid for: refund the payment, or record it by hand',
    )
  }
  return outcome
}

function parseJob(payload: unknown): OutOfBandJob {
  return stringFields(STRIPE_PAID_OUT_OF_BAND, payload, [
    'tenantId',
    'environmentId',
    'stripeInvoiceId',
  ])
}
