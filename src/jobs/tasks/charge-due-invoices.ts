import { AppError } from '../../core/errors.ts'
import { adminAccess } from '../../core/principal.ts'
import { claimDueAutomaticCharges } from '../../modules/invoices/repository.ts'
import { queueAutomaticPayment } from '../../modules/invoices/service.ts'
import {
  countAutomaticAttempts,
  payInvoiceAutomatically,
} from '../../modules/payments/automatic.ts'
import type { PaymentDeps } from '../../modules/payments/service.ts'

export const CHARGE_DUE_INVOICES = 'charge_due_invoices'
/** Attempts per invoice before Payrail stops and leaves it to the customer, like Stripe's retry schedule. */
export const MAX_AUTOMATIC_ATTEMPTS = 4
export const RETRY_AFTER_MS = 3 * 24 * 60 * 60 * 1000

/**
 * Charges the default card of every invoice queued for an automatic charge
 * (renewals of `auto_pay` customers). A declined charge is retried three days
 * later, up to four attempts; every attempt is a payment with its own history.
 */
export async function chargeDueInvoices(
  deps: PaymentDeps,
  batchSize = 50,
): Promise<{ charged: number; failed: number }> {
  let charged = 0
  let failed = 0
  for (;;) {
    const due = await claimDueAutomaticCharges(deps.db, deps.clock.now(), batchSize)
    if (due.length === 0) return { charged, failed }
    for (const invoice of due) {
      const access = adminAccess({
        tenantId: invoice.tenant_id,
        environmentId: invoice.environment_id,
      })
      try {
        await payInvoiceAutomatically(deps, access, invoice.id, {
          cause: 'job',
          causeId: CHARGE_DUE_INVOICES,
        })
        charged += 1
      } catch (error) {
        failed += 1
        const attempts = await countAutomaticAttempts(deps.db, invoice.id)
        const retryable =
          error instanceof AppError &&
          error.status === 402 &&
          error.code !== 'no_default_payment_method'
        if (retryable && attempts < MAX_AUTOMATIC_ATTEMPTS) {
          await queueAutomaticPayment(
            deps.db,
            invoice.id,
            new Date(deps.clock.now().getTime() + RETRY_AFTER_MS),
          )
        }
        deps.logger.info(
          { invoice_id: invoice.id, attempts, err: error },
          'automatic charge did not succeed',
        )
      }
    }
  }
}
