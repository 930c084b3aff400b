import { type RawBuilder, sql } from 'kysely'
import { CURRENT_STATES } from '../../core/payment-state.ts'
import {
  isoTimestamp,
  type JsonText,
  jsonArray,
  jsonLiteral,
  jsonObject,
  jsonText,
  LiteralJson,
  lookup,
  minorUnitsText,
  plainString,
  requiredLiteral,
  requiredString,
} from '../../db/json-sql.ts'

/**
 * A payment's API object (`toPaymentResponse`) built by PostgreSQL as JSON, for the
 * rows of `alias` (a `payments` row), with its attempts. A list page is then one
 * JSON text from the database that Node passes through, instead of 50 parsed rows
 * turned into objects and serialized again. `test/modules/payments-json.test.ts`
 * holds both to the same output.
 */
export function paymentJson(alias: string): JsonText {
  const c = (column: string) => sql.ref(`${alias}.${column}`)
  // Every amount and `currency` are NOT NULL, as are `created_at` and `updated_at`.
  const money = (column: string) => requiredString(minorUnitsText(c(column), c('currency')))
  const time = (column: RawBuilder<unknown>) => plainString(isoTimestamp(column))
  const requiredTime = (column: RawBuilder<unknown>) => requiredString(isoTimestamp(column))
  const address = (field: string) => jsonLiteral(sql`${c('billing_address')} -> ${sql.lit(field)}`)
  const attempt = (column: string) => sql.ref(`a.${column}`)
  const attempts = jsonObject([
    ['id', requiredString(attempt('id'))],
    ['gateway', attempt('gateway')],
    ['gateway_payment_id', attempt('gateway_payment_id')],
    ['gateway_tracking_id', attempt('gateway_tracking_id')],
    ['status', requiredString(attempt('status'))],
    ['error_code', attempt('error_code')],
    ['error_message', attempt('error_message')],
    ['created_at', requiredTime(attempt('created_at'))],
    ['updated_at', requiredTime(attempt('updated_at'))],
  ])
  return jsonObject([
    ['id', requiredString(c('id'))],
    ['object', new LiteralJson(JSON.stringify('payment'))],
    ['human_id', c('human_id')],
    ['tenant_id', requiredString(c('tenant_id'))],
    ['environment_id', requiredString(c('environment_id'))],
    ['customer_id', requiredString(c('customer_id'))],
    ['destination_type', requiredString(c('destination_type'))],
    ['destination_id', requiredString(c('destination_id'))],
    ['subject', c('subject')],
    ['invoice_ids', c('invoice_ids')],
    ['amount', money('amount')],
    ['amount_paid', money('amount_paid')],
    ['amount_reserved', money('amount_reserved')],
    ['amount_refunded', money('amount_refunded')],
    ['currency', c('currency')],
    ['payment_status', requiredString(c('payment_status'))],
    ['current_state', plainString(lookup(c('payment_status'), CURRENT_STATES))],
    ['payment_method_type', requiredString(c('payment_method_type'))],
    ['payment_method_id', c('payment_method_id')],
    ['payment_gateway', c('payment_gateway')],
    ['gateway_payment_id', c('gateway_payment_id')],
    ['gateway_tracking_id', c('gateway_tracking_id')],
    ['gateway_metadata', requiredLiteral(c('gateway_metadata'))],
    ['payment_url', c('payment_url')],
    ['active', requiredLiteral(c('active'))],
    ['payment_date', time(c('payment_date'))],
    [
      'billing_address',
      jsonText(
        sql`case when jsonb_typeof(${c('billing_address')}) = 'object' then ${
          jsonObject(
            ['line1', 'line2', 'city', 'state', 'postal_code', 'country'].map((field) => [
              field,
              address(field),
            ]),
          ).json
        } end`,
      ),
    ],
    ['description', c('description')],
    ['metadata', requiredLiteral(c('metadata'))],
    ['status_code', c('status_code')],
    ['error_message', c('error_message')],
    ['success_url', c('success_url')],
    ['cancel_url', c('cancel_url')],
    ['save_card_and_make_default', requiredLiteral(c('save_card_and_make_default'))],
    ['idempotency_key', c('idempotency_key')],
    ['invoice_number', c('invoice_number')],
    ['discount_code', c('discount_code')],
    ['track_attempts', requiredLiteral(c('track_attempts'))],
    [
      'attempts',
      jsonArray(
        attempts,
        sql`a.created_at, a.id`,
        sql`payment_attempts a where a.payment_id = ${c('id')}`,
      ),
    ],
    ['created_by', c('created_by')],
    ['updated_by', c('updated_by')],
    ['created_at', requiredTime(c('created_at'))],
    ['updated_at', requiredTime(c('updated_at'))],
    ['succeeded_at', time(c('succeeded_at'))],
    ['failed_at', time(c('failed_at'))],
    ['refunded_at', time(c('refunded_at'))],
    ['cancelled_at', time(c('cancelled_at'))],
  ])
}
