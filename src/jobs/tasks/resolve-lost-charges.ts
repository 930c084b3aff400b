import { adminAccess } from '../../core/principal.ts'
import { resolveGateway } from '../../gateways/registry.ts'
import { retryAfterLateFailure } from '../../modules/payments/automatic.ts'
import { findPayment, staleCardCharges } from '../../modules/payments/repository.ts'
import {
  type PaymentDeps,
  processPayment,
  UNKNOWN_OUTCOME_RETRY_WINDOW_MS,
} from '../../modules/payments/service.ts'

export const RESOLVE_LOST_CHARGES = 'resolve_lost_charges'

/**
 * Settles the card charges whose answer was lost and that nothing asked again in time:
 * left PROCESSING, untouched for longer than the provider surely keeps their idempotency
 * key. Each is looked up at the provider (`findCharge`) and gets what the provider holds:
 * SUCCEEDED, a decline, still processing, or FAILED when the provider has no charge (the
 * call never reached it). Without this, such a payment stays PROCESSING for good and its
 * amount, counted as in flight, keeps its invoice from being paid any other way.
 *
 * A charge the provider cannot be asked about now is left for the next run.
 */
export async function resolveLostCharges(
  deps: PaymentDeps,
  batchSize = 50,
): Promise<{ resolved: number; left: number }> {
  const before = new Date(deps.clock.now().getTime() - UNKNOWN_OUTCOME_RETRY_WINDOW_MS)
  let resolved = 0
  let left = 0
  let after: { updatedAt: Date; id: string } | undefined
  for (;;) {
    const batch = await staleCardCharges(deps.db, before, batchSize, after)
    for (const payment of batch) {
      // A gateway that cannot be asked (the sandbox) leaves its charge to its report.
      const gateway = resolveGateway(
        payment.payment_method_type,
        payment.payment_gateway ?? undefined,
      )
      if (!gateway.findCharge) continue
      const access = adminAccess({
        tenantId: payment.tenant_id,
        environmentId: payment.environment_id,
      })
      const cause = { cause: 'job' as const, causeId: RESOLVE_LOST_CHARGES }
      try {
        await processPayment(deps, access, payment, cause)
        resolved += 1
      } catch (error) {
        // A decline or `charge_not_found` is an answer too: the payment has moved on.
        const now = await findPayment(deps.db, payment.environment_id, payment.id)
        const moved = now?.payment_status !== 'PROCESSING'
        // An automatic charge found declined, or never received: the invoice's next attempt,
        // as a provider's report of the failure would have queued it.
        if (now?.payment_status === 'FAILED')
          await retryAfterLateFailure(deps.db, deps, access, now)
        if (moved) resolved += 1
        else left += 1
        deps.logger.info(
          { payment_id: payment.id, err: error, resolved: moved },
          moved ? 'lost card charge settled from the provider' : 'lost card charge left for later',
        )
      }
    }
    const last = batch.at(-1)
    if (!last || batch.length < batchSize) return { resolved, left }
    after = { updatedAt: last.updated_at, id: last.id }
  }
}
