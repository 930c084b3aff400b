import { AppError } from '../../core/errors.ts'
import { adminAccess } from '../../core/principal.ts'
import { availableGatewayNames, gatewayFor } from '../../gateways/registry.ts'
import { isOvertakenPage, pagesOverpayingTheirInvoices } from '../../modules/payments/repository.ts'
import { cancelPayment, type PaymentDeps } from '../../modules/payments/service.ts'

export const WITHDRAW_OVERTAKEN_PAGES = 'withdraw_overtaken_pages'

/**
 * Withdraws the open pages of invoices that another rail has paid meanwhile: a hosted
 * checkout or crypto page still PENDING whose invoice now owes less than the page would
 * take (an offline payment, a card charge or another page paid it, in full or in part).
 * Paid as well, the page would pay the invoice twice (OVERPAID). Each is cancelled as
 * `POST /v1/payments/:id/cancel` would: the provider expires the page first.
 *
 * Only the pages of gateways that can withdraw one (`withdrawsPages`: Stripe, the sandbox)
 * are looked at; the others stay open until their provider reports them paid or expired.
 * A page the customer has just paid stays open too: its report settles it, and money over
 * what the invoice owed is recorded as OVERPAID with `invoice.overpaid`. A provider that
 * cannot be reached is asked again on the next run, and so is a page whose withdrawal
 * failed otherwise (logged): one page never keeps the others from being withdrawn.
 */
export async function withdrawOvertakenPages(
  deps: PaymentDeps,
  batchSize = 50,
): Promise<{ withdrawn: number; left: number }> {
  let withdrawn = 0
  let left = 0
  let after: { createdAt: Date; id: string } | undefined
  const withdrawing = availableGatewayNames().filter(
    (name) => gatewayFor(name).capabilities.withdrawsPages,
  )
  for (;;) {
    const batch = await pagesOverpayingTheirInvoices(deps.db, withdrawing, batchSize, after)
    for (const page of batch) {
      const access = adminAccess({ tenantId: page.tenant_id, environmentId: page.environment_id })
      const cause = { cause: 'job' as const, causeId: WITHDRAW_OVERTAKEN_PAGES }
      try {
        // Read again just before: the batch may be minutes old (an offline payment refunded
        // since leaves the invoice owing the page's amount again).
        if (!(await isOvertakenPage(deps.db, page.id))) continue
        await cancelPayment(deps, access, page.id, cause)
        withdrawn += 1
      } catch (error) {
        left += 1
        // A refusal (the customer paid it) stands until the page settles: quietly. Anything
        // else is logged, and the page is asked again on the next run.
        const refused = error instanceof AppError && error.status < 500
        const log = refused ? deps.logger.debug : deps.logger.warn
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
