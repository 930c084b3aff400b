import type { PaymentDeps } from '../../modules/payments/service.ts'
import {
  attemptDelivery,
  type DeliveryOutcome,
  MERCHANT_WEBHOOK_TASK,
} from '../../modules/webhook-endpoints/service.ts'

export { MERCHANT_WEBHOOK_TASK }

/**
 * One try of a merchant webhook delivery (`attemptDelivery`). A try that got no 2xx
 * throws, so graphile-worker tries again with its backoff, until the job's last try,
 * which records the delivery `failed` instead.
 */
export async function deliverMerchantWebhook(
  deps: PaymentDeps,
  payload: unknown,
  job: { attempts: number; max_attempts: number },
): Promise<DeliveryOutcome> {
  const deliveryId =
    typeof payload === 'object' && payload !== null
      ? (payload as Record<string, unknown>).deliveryId
      : undefined
  if (typeof deliveryId !== 'string') throw new Error(`${MERCHANT_WEBHOOK_TASK} needs {deliveryId}`)
  const outcome = await attemptDelivery(deps, deliveryId, job.attempts >= job.max_attempts)
  if (outcome === 'retry') throw new Error(`delivery ${deliveryId}: no 2xx; tried again later`)
  return outcome
}
