import { template } from '../fixtures.ts'
import { newId, randomToken } from '../ids.ts'
import { type JsonObject, withFields } from '../json.ts'
import { listResponse, newestFirst } from '../list.ts'
import { requireRecord } from '../lookups.ts'
import type { Metadata } from '../params.ts'
import type { Router } from '../router.ts'
import type { EmulatorState, StoredRecord } from '../state.ts'
import { type CardDecline, fingerprint, lastFour } from '../test-cards.ts'
import { nullAddress, type PaymentMethodRecord, testCardOf } from './payment-methods.ts'
import { renderRefund } from './refunds.ts'

export interface ChargeRecord extends StoredRecord {
  amount: number
  amountCaptured: number
  amountRefunded: number
  currency: string
  customer: string | null
  paymentIntent: string | null
  paymentMethod: string
  status: 'succeeded' | 'failed'
  captured: boolean
  /** Why the issuer declined; null for a successful charge. */
  failure: CardDecline | null
  balanceTransaction: string | null
  description: string | null
  metadata: Metadata
  receiptUrl: string
}

export interface NewCharge {
  amount: number
  currency: string
  customer: string | null
  paymentIntent: string
  paymentMethod: PaymentMethodRecord
  description: string | null
  metadata: Metadata
  failure: CardDecline | null
  captured: boolean
}

export function insertCharge(state: EmulatorState, fields: NewCharge): ChargeRecord {
  const id = newId('charge')
  const record: ChargeRecord = {
    id,
    created: state.nowSeconds(),
    seq: state.nextSeq(),
    amount: fields.amount,
    amountCaptured: fields.failure === null && fields.captured ? fields.amount : 0,
    amountRefunded: 0,
    currency: fields.currency,
    customer: fields.customer,
    paymentIntent: fields.paymentIntent,
    paymentMethod: fields.paymentMethod.id,
    status: fields.failure === null ? 'succeeded' : 'failed',
    captured: fields.failure === null && fields.captured,
    failure: fields.failure,
    balanceTransaction: null,
    description: fields.description,
    metadata: { ...fields.metadata },
    receiptUrl: `https://pay.stripe.com/receipts/payment/${randomToken(120)}`,
  }
  state.charges.set(id, record)
  return record
}

export function renderCharge(state: EmulatorState, record: ChargeRecord): JsonObject {
  const paymentMethod = requireRecord(state.paymentMethods, 'PaymentMethod', record.paymentMethod)
  const card = testCardOf(paymentMethod)
  const succeeded = record.status === 'succeeded'
  const refunds = [...state.refunds.values()]
    .filter((refund) => refund.charge === record.id)
    .sort(newestFirst)
  return withFields(template('charge'), {
    id: record.id,
    object: 'charge',
    amount: record.amount,
    amount_captured: record.amountCaptured,
    amount_refunded: record.amountRefunded,
    application: null,
    application_fee: null,
    application_fee_amount: null,
    balance_transaction: record.balanceTransaction,
    billing_details: {
      address: nullAddress(),
      email: paymentMethod.billingDetails.email,
      name: paymentMethod.billingDetails.name,
      phone: paymentMethod.billingDetails.phone,
      tax_id: null,
    },
    calculated_statement_descriptor: succeeded ? 'STRIPE EMULATOR' : null,
    captured: record.captured,
    created: record.created,
    currency: record.currency,
    customer: record.customer,
    description: record.description,
    disputed: false,
    failure_balance_transaction: null,
    failure_code: record.failure?.code ?? null,
    failure_message: record.failure?.message ?? null,
    fraud_details: {},
    livemode: false,
    metadata: record.metadata,
    on_behalf_of: null,
    outcome: renderOutcome(record.failure),
    paid: succeeded,
    payment_intent: record.paymentIntent,
    payment_method: paymentMethod.id,
    payment_method_details: {
      card: {
        amount_authorized: succeeded ? record.amount : null,
        authorization_code: succeeded ? '123456' : null,
        brand: card.brand,
        checks: { address_line1_check: null, address_postal_code_check: null, cvc_check: null },
        country: card.country,
        exp_month: paymentMethod.expMonth,
        exp_year: paymentMethod.expYear,
        extended_authorization: { status: 'disabled' },
        fingerprint: fingerprint(card),
        funding: card.funding,
        incremental_authorization: { status: 'unavailable' },
        installments: null,
        last4: lastFour(card),
        mandate: null,
        multicapture: { status: 'unavailable' },
        network: card.brand,
        network_token: { used: false },
        network_transaction_id: succeeded ? record.id.slice(-15) : null,
        overcapture: { maximum_amount_capturable: record.amount, status: 'unavailable' },
        regulated_status: 'unregulated',
        three_d_secure: null,
        transaction_link_id: null,
        wallet: null,
      },
      type: 'card',
    },
    receipt_email: null,
    receipt_number: null,
    receipt_url: record.receiptUrl,
    refunded: record.amount > 0 && record.amountRefunded >= record.amount,
    refunds: {
      object: 'list',
      data: refunds.map(renderRefund),
      has_more: false,
      url: `/v1/charges/${record.id}/refunds`,
    },
    review: null,
    shipping: null,
    source: null,
    source_transfer: null,
    statement_descriptor: null,
    statement_descriptor_suffix: null,
    status: record.status,
    transfer_data: null,
    transfer_group: null,
  })
}

/** `charge.outcome`: how the network and Radar judged the attempt. */
function renderOutcome(failure: CardDecline | null): JsonObject {
  if (failure === null) {
    return {
      advice_code: null,
      network_advice_code: null,
      network_decline_code: null,
      network_status: 'approved_by_network',
      reason: null,
      risk_level: 'normal',
      risk_score: 20,
      seller_message: 'Payment complete.',
      type: 'authorized',
    }
  }
  return {
    advice_code: null,
    network_advice_code: null,
    network_decline_code: null,
    network_status: 'declined_by_network',
    reason: failure.declineCode,
    risk_level: 'normal',
    risk_score: 20,
    seller_message:
      failure.declineCode === 'generic_decline'
        ? 'The bank did not return any further details with this decline.'
        : `The bank returned the decline code \`${failure.declineCode}\`.`,
    type: 'issuer_declined',
  }
}

export function registerChargeRoutes(router: Router): void {
  router.get('/v1/charges', ({ state, params }) => {
    const customer = params.string('customer')
    const paymentIntent = params.string('payment_intent')
    return listResponse({
      params,
      url: '/v1/charges',
      objectName: 'charge',
      records: state.charges.values(),
      filter: (record) =>
        (customer === undefined || record.customer === customer) &&
        (paymentIntent === undefined || record.paymentIntent === paymentIntent),
      render: (record) => renderCharge(state, record),
    })
  })
  router.get('/v1/charges/:id', ({ state, pathParam }) =>
    renderCharge(state, requireRecord(state.charges, 'charge', pathParam('id'))),
  )
}
