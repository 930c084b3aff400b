import { AppError } from '../../core/errors.ts'
import { isSettled } from '../../core/payment-state.ts'
import { type Access, adminAccess, scopeOf } from '../../core/principal.ts'
import { inTransaction } from '../../db/transaction.ts'
import {
  claimDueAutomaticCharges,
  releaseAutomaticCharge,
} from '../../modules/invoices/repository.ts'
import {
  countAutomaticAttempts,
  MAX_AUTOMATIC_ATTEMPTS,
  OPEN_PAYMENT_DETAIL,
  payInvoiceAutomatically,
  RETRY_AFTER_MS,
  unansweredAutomaticCharge,
} from '../../modules/payments/automatic.ts'
import { CHARGE_NOT_FOUND, type PaymentDeps } from '../../modules/payments/service.ts'
import { setNextPaymentAttemptLocked } from '../../modules/subscriptions/next-payment-attempt.ts'

export const CHARGE_DUE_INVOICES = 'charge_due_invoices'
export { MAX_AUTOMATIC_ATTEMPTS, RETRY_AFTER_MS } from '../../modules/payments/automatic.ts'
/**
 * After a charge whose outcome is unknown, the same payment is asked again an hour later:
 * soon, because only while the provider remembers the idempotency key is a retry a replay.
 * A claimed invoice is also held this long, so one whose worker died comes due again. That
 * hold is the job's lease, not a charge scheduled: it is not announced, and the invoice's
 * real next attempt (or none) is, once the charge has its answer (`setNextPaymentAttemptLocked`).
 */
export const UNKNOWN_OUTCOME_RETRY_AFTER_MS = 60 * 60 * 1000

/**
 * Charges the default card of every invoice queued for an automatic charge
 * (renewals of `auto_pay` customers). Up to four attempts per invoice; an attempt is
 * one charge that did not succeed, a decline or an error, counted across payments:
 *
 * - a decline is retried three days later on a new payment;
 * - a charge with no answer (timeout, 5xx, network error, a worker that died) leaves its
 *   payment PROCESSING and is retried an hour later on that same payment, with the same
 *   idempotency key: the provider replays a charge it took, so the customer is charged
 *   once. If the provider reports the charge first, the invoice is paid and not tried again;
 * - a page open on the invoice (a hosted checkout, a crypto invoice) less than a day old
 *   defers the charge an hour (not an attempt); an older one is withdrawn first, and one
 *   that cannot be (the customer just paid it, or its provider cannot withdraw it) leaves
 *   the invoice to it;
 * - a lost charge the provider turns out never to have received is made again an hour later;
 * - a fault that is no answer (a dropped database connection) is retried an hour later, as
 *   when the worker dies, not counted as an attempt;
 * - anything else (no default card, invoice no longer payable) is not retried.
 *
 * The next attempt is written only while the invoice still holds the job's claim: one moved
 * meanwhile (a cancel, a provider's report, `resolve_lost_charges`) is left as it is.
 */
export async function chargeDueInvoices(
  deps: PaymentDeps,
  batchSize = 50,
): Promise<{ charged: number; failed: number }> {
  let charged = 0
  let failed = 0
  for (;;) {
    const now = deps.clock.now()
    const holdUntil = new Date(now.getTime() + UNKNOWN_OUTCOME_RETRY_AFTER_MS)
    const due = await claimDueAutomaticCharges(deps.db, now, batchSize, holdUntil)
    if (due.length === 0) return { charged, failed }
    for (const invoice of due) {
      const access = adminAccess({
        tenantId: invoice.tenant_id,
        environmentId: invoice.environment_id,
      })
      try {
        const { payment } = await payInvoiceAutomatically(deps, access, invoice.id, {
          cause: 'job',
          causeId: CHARGE_DUE_INVOICES,
        })
        charged += 1
        if (isSettled(payment.payment_status)) {
          // The invoice paid: recording the payment cleared its next attempt, and
          // `invoice.paid` showed it; this statement then changes nothing, as a rule.
          await releaseAutomaticCharge(deps.db, invoice.id, holdUntil)
        } else {
          // A charge still processing, or authorized, may yet fail: its report queues the
          // retry. Until then none is queued, and the events say so.
          await inTransaction(deps.db, (trx) =>
            setNextPaymentAttemptLocked(trx, scopeOf(access), invoice.id, null, deps.clock, {
              ifStill: holdUntil,
            }),
          )
        }
      } catch (error) {
        failed += 1
        await scheduleAfterFailure(deps, access, invoice.id, error, holdUntil)
      }
    }
  }
}

/**
 * Queues the invoice's next attempt after one that did not succeed, or stops its automatic
 * charges. Only while the invoice still holds the job's claim (`holdUntil`): one moved since
 * was moved by someone else, whose word stands (a cancel that cleared it; a lookup by
 * `resolve_lost_charges` or a provider's report that settled the charge and queued the retry,
 * the job's own lookup then answered 409 `conflict`).
 */
async function scheduleAfterFailure(
  deps: PaymentDeps,
  access: Access,
  invoiceId: string,
  error: unknown,
  holdUntil: Date,
): Promise<void> {
  const attempts = await countAutomaticAttempts(deps.db, access, invoiceId)
  const unanswered = await unansweredAutomaticCharge(deps.db, access, invoiceId)
  const retryAfter = retryDelayAfter(error, unanswered !== undefined)
  const retry = retryAfter !== undefined && attempts < MAX_AUTOMATIC_ATTEMPTS
  // Announced (`invoice.updated`): the last event showed the job's claim, an hour away.
  const next = await inTransaction(deps.db, (trx) =>
    setNextPaymentAttemptLocked(
      trx,
      scopeOf(access),
      invoiceId,
      retry ? new Date(deps.clock.now().getTime() + retryAfter) : null,
      deps.clock,
      { ifStill: holdUntil },
    ),
  )
  const log = {
    invoice_id: invoiceId,
    attempts,
    payment_id: unanswered?.id,
    next_payment_attempt: next,
    err: error,
  }
  if (isUnexpected(error)) {
    deps.logger.error(log, 'automatic charge failed on an unexpected error')
  } else if (next !== null) {
    deps.logger.info(log, 'automatic charge did not succeed; next attempt queued')
  } else if (unanswered) {
    deps.logger.warn(
      log,
      'automatic charge left PROCESSING with an unknown outcome; the provider report settles it',
    )
  } else {
    deps.logger.info(log, 'automatic charge did not succeed; no further attempt')
  }
}

/** How long until the next attempt after `error`, or `undefined` when there is none to make. */
function retryDelayAfter(error: unknown, leftProcessing: boolean): number | undefined {
  // Not an answer but a fault (a dropped database connection, a deadlock, a bug): whatever step
  // it hit, the charge is asked again an hour later, as when the worker dies there.
  if (isUnexpected(error)) return UNKNOWN_OUTCOME_RETRY_AFTER_MS
  if (!(error instanceof AppError)) return undefined
  // The charge call itself failed: the provider may hold the money.
  if (leftProcessing && error.code === 'gateway_error') return UNKNOWN_OUTCOME_RETRY_AFTER_MS
  // A page the customer may be paying now: asked again once it may be closed.
  if (error.details[OPEN_PAYMENT_DETAIL] !== undefined && error.details.deferred === true)
    return UNKNOWN_OUTCOME_RETRY_AFTER_MS
  // The provider never received the charge: nothing was taken, and a new one may be made.
  if (error.code === 'gateway_error' && error.details.status_code === CHARGE_NOT_FOUND)
    return UNKNOWN_OUTCOME_RETRY_AFTER_MS
  // A decline. Anything else is a definitive answer (no default card, its gateway not
  // connected, the invoice no longer payable, a page left to the customer, the provider's
  // refusal): no further attempt.
  const declined = error.status === 402 && error.code !== 'no_default_payment_method'
  return declined ? RETRY_AFTER_MS : undefined
}

/**
 * An error that is no answer of Payrail's or the provider's: not an `AppError`, or one of
 * Payrail's own faults (5xx other than the provider's `gateway_error`).
 */
function isUnexpected(error: unknown): boolean {
  return !(error instanceof AppError) || (error.status >= 500 && error.code !== 'gateway_error')
}
