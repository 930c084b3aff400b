import type { PaymentDeps } from '../../modules/payments/service.ts'
import {
  attemptDelivery,
  type DeliveryOutcome,
  MERCHANT_WEBHOOK_TASK,
} from '../../modules/webhook-endpoints/service.ts'
import { stringFields } from '../payload.ts'

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
  const { deliveryId } = stringFields(MERCHANT_WEBHOOK_TASK, payload, ['deliveryId'])
  const outcome = await attemptDelivery(deps, deliveryId, job.attempts >= job.max_attempts)
  if (outcome === 'retry') throw new Error(`delivery ${deliveryId}: no 2xx; tried again later`)
  return outcome
}
