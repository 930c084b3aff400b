import { newId } from '../../core/ids.ts'
import type { Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { PaymentMethod } from '../../db/database.ts'
import { findPaymentMethod, insertPaymentMethod, listPaymentMethods } from './repository.ts'

export interface SavedCard {
  customerId: string
  gateway: string
  gatewayPaymentMethodId: string
  brand?: string | null
  last4?: string | null
  expMonth?: number | null
  expYear?: number | null
}

/**
 * Records a card a gateway saved for a customer; saving the same gateway method
 * again returns the existing record.
 *
 * @example
 * await savePaymentMethod(trx, scope, { customerId, gateway: 'sandbox', gatewayPaymentMethodId: 'card_x', last4: '4242' })
 */
export async function savePaymentMethod(
  db: Db,
  scope: Scope,
  card: SavedCard,
): Promise<PaymentMethod> {
  return insertPaymentMethod(db, {
    id: newId('paymentMethod'),
    tenant_id: scope.tenantId,
    environment_id: scope.environmentId,
    customer_id: card.customerId,
    gateway: card.gateway,
    gateway_payment_method_id: card.gatewayPaymentMethodId,
    type: 'card',
    card_brand: card.brand ?? null,
    card_last4: card.last4 ?? null,
    card_exp_month: card.expMonth ?? null,
    card_exp_year: card.expYear ?? null,
  })
}

export async function paymentMethodsOf(
  db: Db,
  scope: Scope,
  customerId: string,
): Promise<PaymentMethod[]> {
  return listPaymentMethods(db, scope.environmentId, customerId)
}

export async function findCustomerPaymentMethod(
  db: Db,
  scope: Scope,
  customerId: string,
  id: string,
): Promise<PaymentMethod | undefined> {
  return findPaymentMethod(db, scope.environmentId, customerId, id)
}
