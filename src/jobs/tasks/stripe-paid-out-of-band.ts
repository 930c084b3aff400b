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
): Promise<'marked' | 'already_paid'> {
  const job = parseJob(payload)
  const ctx = await gatewayContext(
    deps,
    { tenantId: job.tenantId, environmentId: job.environmentId },
    'stripe',
  )
  return markInvoicePaidOutOfBand(ctx, job.stripeInvoiceId)
}

function parseJob(payload: unknown): OutOfBandJob {
  return stringFields(STRIPE_PAID_OUT_OF_BAND, payload, [
    'tenantId',
    'environmentId',
    'stripeInvoiceId',
  ])
}
