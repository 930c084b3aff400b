import { AppError } from '../../core/errors.ts'
import { adminAccess } from '../../core/principal.ts'
import { GATEWAY_NAMES } from '../../gateways/gateway.ts'
import { gatewayFor } from '../../gateways/registry.ts'
import { pagesOverpayingTheirInvoices } from '../../modules/payments/repository.ts'
import { cancelPayment, type PaymentDeps } from '../../modules/payments/service.ts'

export const WITHDRAW_OVERTAKEN_PAGES = 'withdraw_overtaken_pages'

/**
 * Withdraws the open pages of invoices that another rail has paid meanwhile: a hosted
 * checkout or crypto page still PENDING whose invoice now owes less than the page would
 * take (an offline payment, a card charge or another page paid it, in full or in part).
 * Paid as well, the page would pay the invoice twice (OVERPAID). Each is cancelled as
 * `POST /v1/payments/:id/cancel` would: the provider expires the page first.
 *
 * A page the provider cannot withdraw (a Checkout.com hosted payment page), or that the
 * customer has just paid, stays open: its report settles it, and money over what the
 * invoice owed is recorded as OVERPAID with `invoice.overpaid`. A provider that cannot be
 * reached is asked again on the next run.
 */
export async function withdrawOvertakenPages(
  deps: PaymentDeps,
  batchSize = 50,
): Promise<{ withdrawn: number; left: number }> {
  let withdrawn = 0
  let left = 0
  let after: { createdAt: Date; id: string } | undefined
  // The gateways that may withdraw a page they opened (`Gateway.cancel`).
  const withdrawing = GATEWAY_NAMES.filter((name) => gatewayFor(name).cancel !== undefined)
  for (;;) {
    const batch = await pagesOverpayingTheirInvoices(deps.db, withdrawing, batchSize, after)
    for (const page of batch) {
      const access = adminAccess({ tenantId: page.tenant_id, environmentId: page.environment_id })
      const cause = { cause: 'job' as const, causeId: WITHDRAW_OVERTAKEN_PAGES }
      try {
        await cancelPayment(deps, access, page.id, cause)
        withdrawn += 1
      } catch (error) {
        // A refusal (the page paid, a page the provider cannot withdraw) or an unreachable
        // provider leaves the page as it is; anything else is a fault of this run.
        if (!(error instanceof AppError) || (error.status >= 500 && error.code !== 'gateway_error'))
          throw error
        left += 1
        // A refusal is asked again every minute until the page settles or expires: quietly.
        const log = error.code === 'gateway_error' ? deps.logger.warn : deps.logger.debug
        log.call(
          deps.logger,
          { payment_id: page.id, invoice_ids: page.invoice_ids, err: error },
          'open page on an invoice paid another way could not be withdrawn',
        )
      }
    }
    const last = batch.at(-1)
    if (!last || batch.length < batchSize) return { withdrawn, left }
    after = { createdAt: last.created_at, id: last.id }
  }
}
