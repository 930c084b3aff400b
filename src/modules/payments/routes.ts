import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync, FastifyRequest } from 'fastify'
import { type Static, Type } from 'typebox'
import type { AppDeps } from '../../app.ts'
import { validationError } from '../../core/errors.ts'
import { normalizeCurrency } from '../../core/money.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { aliasedFilter, listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated, sendPaginatedJson } from '../../http/pagination.ts'
import { DecimalAmount, EmptyBody, IdParams, Metadata, Nullable } from '../../http/schema-types.ts'
import {
  accessFor,
  assertMethodAllowed,
  confirmInvoicePayment,
  createAndProcess,
  createOrRetrieveInvoicePayment,
  payInvoice,
  payOptions,
  payOrders,
  updateInvoicePayment,
} from './flows.ts'
import { createRefund, getRefund, listRefunds } from './refunds.ts'
import {
  CreatePaymentBody,
  CreateRefundBody,
  PaymentListQuery,
  PaymentMethodTypeSchema,
  PaymentSchema,
  RefundListQuery,
  RefundSchema,
  toPaymentResponse,
  toRefundResponse,
  UpdatePaymentBody,
  Url,
} from './schemas.ts'
import {
  attemptsByPayment,
  cancelPayment,
  deletePayment,
  getPayment,
  listPaymentsJson,
  type PaymentView,
  processPayment,
  updatePaymentFields,
} from './service.ts'
import type { Cause } from './state.ts'

const tags = ['Payments']
const errors = { '4xx': ErrorResponse, '5xx': ErrorResponse }
const customerToo = { roles: ['admin', 'user'] as const }

const PayBody = Type.Object({
  payment_method_type: PaymentMethodTypeSchema,
  payment_gateway: Type.Optional(Type.String({ maxLength: 40 })),
  payment_method_id: Type.Optional(Type.String({ maxLength: 200 })),
  amount: Type.Optional(DecimalAmount),
  success_url: Type.Optional(Url),
  cancel_url: Type.Optional(Url),
  save_card_and_make_default: Type.Optional(Type.Boolean()),
  discount_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  metadata: Type.Optional(Metadata),
})
const PayOrdersBody = Type.Object({
  orders: Type.Array(Type.String({ minLength: 1 }), { minItems: 1, maxItems: 50 }),
  payment_method_type: Type.Optional(PaymentMethodTypeSchema),
  /**
   * DESIGN's spelling of the same: the method type (`"OFFLINE"`), or an object with the
   * type and, as the flat fields say it, the gateway and the saved method.
   */
  payment_method: Type.Optional(
    Type.Union([
      PaymentMethodTypeSchema,
      Type.Object(
        {
          type: PaymentMethodTypeSchema,
          gateway: Type.Optional(Type.String({ maxLength: 40 })),
          id: Type.Optional(Type.String({ maxLength: 200 })),
        },
        { additionalProperties: false },
      ),
    ]),
  ),
  payment_gateway: Type.Optional(Type.String({ maxLength: 40 })),
  payment_method_id: Type.Optional(Type.String({ maxLength: 200 })),
  success_url: Type.Optional(Url),
  cancel_url: Type.Optional(Url),
  save_card_and_make_default: Type.Optional(Type.Boolean()),
  metadata: Type.Optional(Metadata),
})
const OnRampType = Type.Union([
  Type.Literal('PLATFORM'),
  Type.Literal('CHECKOUT'),
  Type.Literal('EXTERNAL'),
])
const OnRampBody = Type.Object({
  type: OnRampType,
  account_id: Type.Optional(
    Type.String({ description: 'PLATFORM: the customer whose balance pays' }),
  ),
  some_data: Type.Optional(
    Type.Unknown({ description: 'EXTERNAL: passed through to the external system' }),
  ),
  payment_id: Type.Optional(Type.String()),
  discount_code: Type.Optional(Type.String({ minLength: 1, maxLength: 64 })),
  payment_gateway: Type.Optional(Type.String({ maxLength: 40 })),
  success_url: Type.Optional(Url),
  cancel_url: Type.Optional(Url),
})
const OnRampPatchBody = Type.Object({ ...OnRampBody.properties, type: Type.Optional(OnRampType) })
const ConfirmBody = Type.Object({ payment_id: Type.Optional(Type.String()) })
const PayOptionSchema = Type.Object({
  payment_method_type: Type.String(),
  payment_gateway: Type.String(),
  available: Type.Boolean(),
  reason: Nullable(Type.String()),
  payment_method_id: Nullable(Type.String()),
  card: Nullable(Type.Object({ brand: Nullable(Type.String()), last4: Nullable(Type.String()) })),
  balance: Nullable(Type.String()),
})
const PayOptionsSchema = Type.Object({
  object: Type.Literal('pay_options'),
  invoice_id: Type.String(),
  customer_id: Type.String(),
  payable: Type.Boolean(),
  reason: Nullable(Type.String()),
  currency: Type.String(),
  amount_remaining: Type.String(),
  payment_window_ends_at: Nullable(Type.String()),
  options: Type.Array(PayOptionSchema),
})

/** The request as the cause of the state changes it makes (their history's `cause_id`). */
export function causeOf(request: FastifyRequest): Cause {
  return {
    cause: 'api',
    causeId: request.principal?.keyId ?? request.id,
    note: `${request.method} ${request.routeOptions.url}`,
  }
}

export function paymentRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()
    const show = async (view: PaymentView) => {
      const attempts =
        view.attempts ??
        (await attemptsByPayment(deps.db, [view.payment.id])).get(view.payment.id) ??
        []
      return toPaymentResponse(view.payment, attempts, view.invoiceIds)
    }

    app.post(
      '/payments',
      {
        config: customerToo,
        schema: {
          tags,
          summary:
            'Create a payment for an invoice (Flexprice-compatible) and process it unless process_payment is false',
          body: CreatePaymentBody,
          response: { 201: PaymentSchema, ...errors },
        },
      },
      async (request, reply) => {
        const view = await createAndProcess(
          deps,
          accessFor(principalOf(request)),
          request.body,
          causeOf(request),
        )
        return reply.code(201).send(await show(view))
      },
    )

    app.get(
      '/payments',
      {
        config: customerToo,
        schema: {
          tags,
          summary: 'List payments',
          querystring: PaymentListQuery,
          response: { 200: PaginatedSchema(PaymentSchema), ...errors },
        },
      },
      async (request, reply) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'amount', 'updated_at'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        // The page comes from PostgreSQL as JSON text (payments/json.ts) and is sent as is.
        const { items, total } = await listPaymentsJson(
          deps.db,
          accessFor(principalOf(request)),
          {
            status: aliasedFilter(query, 'payment_status', 'status'),
            paymentMethodType: query.payment_method_type,
            gateway: query.payment_gateway,
            destinationId: query.destination_id,
            customerId: query.customer_id,
            currency: query.currency === undefined ? undefined : normalizeCurrency(query.currency),
            includeInactive: query.include_inactive,
          },
          list,
          deps.genericPlans,
        )
        return sendPaginatedJson(reply, items, total, list.page)
      },
    )

    app.get(
      '/payments/:id',
      {
        config: customerToo,
        schema: {
          tags,
          summary: 'Retrieve a payment',
          params: IdParams,
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) =>
        show(await getPayment(deps.db, accessFor(principalOf(request)), request.params.id)),
    )

    for (const method of ['PUT', 'PATCH'] as const) {
      app.route({
        method,
        url: '/payments/:id',
        config: customerToo,
        schema: {
          tags,
          summary: 'Update the editable fields of a payment',
          params: IdParams,
          body: UpdatePaymentBody,
          response: { 200: PaymentSchema, ...errors },
        },
        handler: async (request) => {
          const principal = principalOf(request)
          return show(
            await updatePaymentFields(
              deps,
              accessFor(principal),
              request.params.id,
              request.body,
              principal.keyId,
            ),
          )
        },
      })
    }

    app.delete(
      '/payments/:id',
      {
        schema: {
          tags,
          summary: 'Delete (deactivate) a payment that took no money: INITIATED or FAILED',
          params: IdParams,
          body: EmptyBody,
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) => {
        const principal = principalOf(request)
        return show(
          await deletePayment(deps, accessFor(principal), request.params.id, principal.keyId),
        )
      },
    )

    app.post(
      '/payments/:id/process',
      {
        config: customerToo,
        schema: {
          tags,
          summary: 'Process an INITIATED (or retry a FAILED) payment',
          params: IdParams,
          body: EmptyBody,
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) => {
        const access = accessFor(principalOf(request))
        const { payment } = await getPayment(deps.db, access, request.params.id)
        assertMethodAllowed(access, payment.payment_method_type)
        return show(await processPayment(deps, access, request.params.id, causeOf(request)))
      },
    )

    app.post(
      '/payments/:id/cancel',
      {
        schema: {
          tags,
          summary: 'Cancel a payment that has not taken money',
          params: IdParams,
          body: EmptyBody,
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await cancelPayment(
            deps,
            accessFor(principalOf(request)),
            request.params.id,
            causeOf(request),
          ),
        ),
    )

    app.post(
      '/payments/:id/refunds',
      {
        schema: {
          tags: ['Refunds'],
          summary: 'Refund a payment, fully (no amount) or in part',
          params: IdParams,
          body: Type.Optional(CreateRefundBody),
          response: { 201: RefundSchema, ...errors },
        },
      },
      async (request, reply) => {
        const refund = await createRefund(
          deps,
          accessFor(principalOf(request)),
          request.params.id,
          request.body ?? {},
          causeOf(request),
        )
        return reply.code(201).send(toRefundResponse(refund))
      },
    )

    app.get(
      '/refunds',
      {
        schema: {
          tags: ['Refunds'],
          summary: 'List refunds',
          querystring: RefundListQuery,
          response: { 200: PaginatedSchema(RefundSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(query, ['created_at', 'amount'] as const, {
          field: 'created_at',
          direction: 'desc',
        })
        const { items, total } = await listRefunds(
          deps.db,
          accessFor(principalOf(request)),
          {
            paymentId: query.payment_id,
            status: query.status === undefined ? undefined : refundStatus(query.status),
          },
          list,
        )
        return paginated(items.map(toRefundResponse), total, list.page)
      },
    )

    app.get(
      '/refunds/:id',
      {
        schema: {
          tags: ['Refunds'],
          summary: 'Retrieve a refund',
          params: IdParams,
          response: { 200: RefundSchema, ...errors },
        },
      },
      async (request) =>
        toRefundResponse(
          await getRefund(deps.db, accessFor(principalOf(request)), request.params.id),
        ),
    )

    app.get(
      '/invoices/:id/pay_options',
      {
        config: customerToo,
        schema: {
          tags: ['Invoices'],
          summary: 'What the customer can pay this invoice with right now',
          params: IdParams,
          response: { 200: PayOptionsSchema, ...errors },
        },
      },
      async (request) => payOptions(deps, accessFor(principalOf(request)), request.params.id),
    )

    app.post(
      '/invoices/:id/pay',
      {
        config: customerToo,
        schema: {
          tags: ['Invoices'],
          summary: 'Pay what is left of an invoice (or amount) now',
          params: IdParams,
          body: PayBody,
          response: { 201: PaymentSchema, ...errors },
        },
      },
      async (request, reply) => {
        const view = await payInvoice(
          deps,
          accessFor(principalOf(request)),
          request.params.id,
          request.body,
          causeOf(request),
        )
        return reply.code(201).send(await show(view))
      },
    )

    app.put(
      '/invoices/:id/payment',
      {
        config: customerToo,
        schema: {
          tags: ['Invoices'],
          summary: 'Create or retrieve the payment of an invoice (PLATFORM, CHECKOUT or EXTERNAL)',
          params: IdParams,
          body: OnRampBody,
          response: { 200: PaymentSchema, 201: PaymentSchema, ...errors },
        },
      },
      async (request, reply) => {
        const view = await createOrRetrieveInvoicePayment(
          deps,
          accessFor(principalOf(request)),
          request.params.id,
          request.body,
          causeOf(request),
        )
        return reply.code(view.created ? 201 : 200).send(await show(view))
      },
    )

    app.patch(
      '/invoices/:id/payment',
      {
        config: customerToo,
        schema: {
          tags: ['Invoices'],
          summary: "Update the invoice's unconfirmed payment (discount code, URLs, external data)",
          params: IdParams,
          body: OnRampPatchBody,
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await updateInvoicePayment(
            deps,
            accessFor(principalOf(request)),
            request.params.id,
            request.body,
            causeOf(request),
          ),
        ),
    )

    app.post(
      '/invoices/:id/payment/confirm',
      {
        config: customerToo,
        schema: {
          tags: ['Invoices'],
          summary: "Confirm (process) the invoice's payment",
          params: IdParams,
          body: Type.Optional(ConfirmBody),
          response: { 200: PaymentSchema, ...errors },
        },
      },
      async (request) =>
        show(
          await confirmInvoicePayment(
            deps,
            accessFor(principalOf(request)),
            request.params.id,
            request.body?.payment_id,
            causeOf(request),
          ),
        ),
    )

    app.post(
      '/orders/pay',
      {
        config: customerToo,
        schema: {
          tags: ['Orders'],
          summary: 'Pay several pending orders of one customer with one payment',
          body: PayOrdersBody,
          response: { 201: PaymentSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { orders, payment_method, ...rest } = request.body
        const view = await payOrders(
          deps,
          accessFor(principalOf(request)),
          orders,
          withPaymentMethod(rest, payment_method),
          causeOf(request),
        )
        return reply.code(201).send(await show(view))
      },
    )
  }
}

/**
 * The flat fields of `POST /orders/pay` with `payment_method` folded in: it may say what
 * they say, never something else (400), and one of the two must name the method type.
 */
function withPaymentMethod(
  body: Omit<Static<typeof PayOrdersBody>, 'orders' | 'payment_method'>,
  method: Static<typeof PayOrdersBody>['payment_method'],
) {
  const given = typeof method === 'string' ? { type: method } : method
  const fields = [
    ['payment_method_type', body.payment_method_type, given?.type],
    ['payment_gateway', body.payment_gateway, given?.gateway],
    ['payment_method_id', body.payment_method_id, given?.id],
  ] as const
  for (const [field, flat, nested] of fields) {
    if (flat !== undefined && nested !== undefined && flat !== nested)
      throw validationError(`${field} and payment_method disagree`, { field })
  }
  const type = body.payment_method_type ?? given?.type
  if (type === undefined)
    throw validationError('payment_method_type (or payment_method) is required', {
      field: 'payment_method_type',
    })
  return {
    ...body,
    payment_method_type: type,
    payment_gateway: body.payment_gateway ?? given?.gateway,
    payment_method_id: body.payment_method_id ?? given?.id,
  }
}

function refundStatus(status: string) {
  switch (status) {
    case 'pending':
    case 'succeeded':
    case 'failed':
    case 'canceled':
      return status
    default:
      return undefined
  }
}
