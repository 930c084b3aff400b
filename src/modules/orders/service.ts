import type { Clock } from '../../core/clock.ts'
import { notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import { normalizeCurrency, toMinorUnits } from '../../core/money.ts'
import type { Access, Scope } from '../../core/principal.ts'
import type { Db } from '../../db/client.ts'
import type { Order, OrderType, Price, Product } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import type { ListRequest } from '../../http/list-query.ts'
import { newMetadata } from '../../http/schema-types.ts'
import { getCustomer } from '../customers/service.ts'
import { recordEvents } from '../events/service.ts'
import {
  type DraftLine,
  finalizeLocked,
  type InvoiceWithLines,
  insertDraftInvoice,
  linesOfInvoice,
} from '../invoices/service.ts'
import { getPriceWithProduct } from '../products/service.ts'
import { settlePaidInvoice } from '../settlement/service.ts'
import { firstPeriod, insertIncompleteSubscription } from '../subscriptions/service.ts'
import {
  findOrder,
  insertOrder,
  listOrders as listOrderRows,
  type OrderFilters,
} from './repository.ts'
import { type CreateOrderBody, toOrderResponse } from './schemas.ts'

const PRODUCT_TYPE_FOR: Record<OrderType, Product['type']> = {
  SUBSCRIPTION: 'recurring',
  CREDIT_TOP_UP: 'credit_top_up',
  ONE_TIME_PRODUCT: 'one_time',
}

export interface OrderWithInvoice {
  order: Order
  invoice: InvoiceWithLines
}

/**
 * Creates an order and its finalized invoice in one transaction. A SUBSCRIPTION
 * order also creates its subscription (`incomplete` until the invoice is paid); a
 * CREDIT_TOP_UP takes a top-up price or a custom `amount` + `currency`. An order
 * with nothing to pay (a 100% discount) is fulfilled at once.
 *
 * @example
 * await createOrder(db, scope, { customer_id, type: 'CREDIT_TOP_UP', amount: '50.00', currency: 'usd' }, clock)
 */
export async function createOrder(
  db: Db,
  scope: Scope,
  body: CreateOrderBody,
  clock: Clock,
): Promise<OrderWithInvoice> {
  await getCustomer(db, scope, body.customer_id)
  const quantity = body.quantity ?? 1
  const item = await resolveItem(db, scope, body)
  const now = clock.now()
  const orderId = newId('order')
  const subscriptionId = body.type === 'SUBSCRIPTION' ? newId('subscription') : null
  const collectionMethod =
    body.collection_method ??
    (body.type === 'SUBSCRIPTION' ? 'charge_automatically' : 'send_invoice')
  const period =
    body.type === 'SUBSCRIPTION' && item.price ? firstPeriod(item.price, now) : undefined
  const line: DraftLine = {
    description: item.description,
    quantity,
    unitAmount: item.unitAmount,
    priceId: item.price?.id ?? null,
    periodStart: period?.start ?? null,
    periodEnd: period?.end ?? null,
  }

  return inTransaction(db, async (trx) => {
    const { invoice: draft } = await insertDraftInvoice(
      trx,
      scope,
      {
        customerId: body.customer_id,
        currency: item.currency,
        lines: [line],
        billingReason: body.type === 'SUBSCRIPTION' ? 'subscription_create' : 'order',
        collectionMethod,
        paymentWindowDays: body.payment_window_days ?? null,
        discountCode: body.discount_code ?? null,
        orderId,
        subscriptionId,
        periodStart: period?.start ?? null,
        periodEnd: period?.end ?? null,
        metadata: body.metadata,
      },
      clock,
    )
    const order = await insertOrder(trx, {
      id: orderId,
      tenant_id: scope.tenantId,
      environment_id: scope.environmentId,
      customer_id: body.customer_id,
      type: body.type,
      status: 'PENDING',
      product_id: item.product?.id ?? null,
      price_id: item.price?.id ?? null,
      quantity,
      amount: item.unitAmount * BigInt(quantity),
      currency: item.currency,
      invoice_id: draft.id,
      subscription_id: subscriptionId,
      metadata: newMetadata(body.metadata),
      created_at: now,
      updated_at: now,
    })
    if (subscriptionId && item.price && item.product) {
      await insertIncompleteSubscription(trx, scope, {
        id: subscriptionId,
        customerId: body.customer_id,
        price: item.price,
        product: item.product,
        quantity,
        collectionMethod,
        orderId,
        latestInvoiceId: draft.id,
        start: now,
        metadata: body.metadata,
      })
    }
    await recordEvents(trx, scope, clock.now(), [
      {
        type: 'order.created',
        objectType: 'order',
        objectId: orderId,
        data: toOrderResponse(order),
      },
    ])
    const { invoice, becamePaid } = await finalizeLocked(trx, scope, draft, clock)
    if (becamePaid) await settlePaidInvoice(trx, scope, invoice, clock)
    const current = await findOrder(trx, scope.environmentId, orderId)
    return {
      order: current ?? order,
      invoice: { invoice, lines: await linesOfInvoice(trx, invoice.id) },
    }
  })
}

interface OrderItem {
  product: Product | null
  price: Price | null
  unitAmount: bigint
  currency: string
  description: string
}

async function resolveItem(db: Db, scope: Scope, body: CreateOrderBody): Promise<OrderItem> {
  if (body.type === 'CREDIT_TOP_UP' && body.price_id === undefined) {
    if (body.amount === undefined || body.currency === undefined) {
      throw validationError('A credit top-up needs a price_id, or an amount and currency', {
        fields: ['price_id', 'amount'],
      })
    }
    const currency = normalizeCurrency(body.currency)
    const unitAmount = toMinorUnits(body.amount, currency)
    if (unitAmount <= 0n)
      throw validationError('amount must be greater than zero', { field: 'amount' })
    return {
      product: null,
      price: null,
      unitAmount,
      currency,
      description: 'Account credit top-up',
    }
  }
  if (body.price_id === undefined)
    throw validationError(`A ${body.type} order needs a price_id`, { field: 'price_id' })
  if (body.amount !== undefined || body.currency !== undefined) {
    throw validationError(
      'amount and currency come from the price; send them only for a custom credit top-up',
      {
        fields: ['amount', 'currency'],
      },
    )
  }
  const { price, product } = await getPriceWithProduct(db, scope, body.price_id)
  const expected = PRODUCT_TYPE_FOR[body.type]
  if (product.type !== expected) {
    throw validationError(
      `A ${body.type} order needs a ${expected} product; ${product.id} is ${product.type}`,
      {
        field: 'price_id',
      },
    )
  }
  if (!price.active || !product.active) {
    throw validationError(`Price ${price.id} or its product is not active`, { field: 'price_id' })
  }
  // A top-up price of 0, made before such prices were refused, would credit nothing.
  if (body.type === 'CREDIT_TOP_UP' && price.amount <= 0n)
    throw validationError(`Price ${price.id} tops up nothing`, { field: 'price_id' })
  return {
    product,
    price,
    unitAmount: price.amount,
    currency: price.currency,
    description: product.name,
  }
}

/** An order the caller may see: a customer token sees only its customer's (others are 404). */
export async function getOrder(db: Db, access: Access, id: string): Promise<Order> {
  const order = await findOrder(db, access.environmentId, id, access.customerId)
  if (!order) throw notFound('order', id)
  return order
}

export async function listOrders(
  db: Db,
  access: Access,
  filters: OrderFilters,
  request: ListRequest<'created_at' | 'amount'>,
) {
  if (
    access.customerId !== null &&
    filters.customerId !== undefined &&
    filters.customerId !== access.customerId
  ) {
    return { items: [], total: 0 }
  }
  const scoped =
    access.customerId === null ? filters : { ...filters, customerId: access.customerId }
  return listOrderRows(db, access.environmentId, scoped, request)
}
