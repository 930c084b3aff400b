import type { TypeBoxTypeProvider } from '@fastify/type-provider-typebox'
import type { FastifyPluginAsync } from 'fastify'
import type { AppDeps } from '../../app.ts'
import { normalizeCurrency } from '../../core/money.ts'
import { accessOf } from '../../core/principal.ts'
import { principalOf } from '../../http/auth.ts'
import { ErrorResponse } from '../../http/error-handler.ts'
import { aliasedFilter, listRequestFrom } from '../../http/list-query.ts'
import { PaginatedSchema, paginated } from '../../http/pagination.ts'
import { EmptyBody, IdParams } from '../../http/schema-types.ts'
import { finalizeInvoice, markInvoiceUncollectible, voidInvoice } from '../settlement/service.ts'
import { CreateInvoiceBody, InvoiceListQuery, InvoiceSchema, toInvoiceResponse } from './schemas.ts'
import { createInvoice, getInvoice, linesOfInvoice, listInvoices } from './service.ts'

const tags = ['Invoices']
const errors = { '4xx': ErrorResponse }
const customerReadable = { roles: ['admin', 'user'] as const }

export function invoiceRoutes(deps: AppDeps): FastifyPluginAsync {
  return async (plugin) => {
    const app = plugin.withTypeProvider<TypeBoxTypeProvider>()

    app.post(
      '/invoices',
      {
        schema: {
          tags,
          summary: 'Create a DRAFT invoice',
          body: CreateInvoiceBody,
          response: { 201: InvoiceSchema, ...errors },
        },
      },
      async (request, reply) => {
        const { invoice, lines } = await createInvoice(
          deps.db,
          principalOf(request),
          request.body,
          deps.clock,
        )
        return reply.code(201).send(toInvoiceResponse(invoice, lines))
      },
    )

    app.get(
      '/invoices',
      {
        config: customerReadable,
        schema: {
          tags,
          summary: "List invoices (a customer token sees only its customer's)",
          querystring: InvoiceListQuery,
          response: { 200: PaginatedSchema(InvoiceSchema), ...errors },
        },
      },
      async (request) => {
        const { query } = request
        const list = listRequestFrom(
          query,
          ['created_at', 'due_date', 'total', 'number', 'amount_remaining'] as const,
          {
            field: 'created_at',
            direction: 'desc',
          },
        )
        const { items, total } = await listInvoices(
          deps.db,
          accessOf(principalOf(request)),
          {
            customerId: query.customer_id,
            subscriptionId: query.subscription_id,
            invoiceStatus: aliasedFilter(query, 'invoice_status', 'status'),
            paymentStatus: query.payment_status,
            currency: query.currency === undefined ? undefined : normalizeCurrency(query.currency),
            source: query.source,
          },
          list,
        )
        return paginated(
          items.map((i) => toInvoiceResponse(i.invoice, i.lines)),
          total,
          list.page,
        )
      },
    )

    app.get(
      '/invoices/:id',
      {
        config: customerReadable,
        schema: {
          tags,
          summary: 'Retrieve an invoice',
          params: IdParams,
          response: { 200: InvoiceSchema, ...errors },
        },
      },
      async (request) => {
        const { invoice, lines } = await getInvoice(
          deps.db,
          accessOf(principalOf(request)),
          request.params.id,
        )
        return toInvoiceResponse(invoice, lines)
      },
    )

    const transitions = [
      [
        'finalize',
        'Finalize a DRAFT invoice: it gets its number and becomes payable',
        finalizeInvoice,
      ],
      ['void', 'Void an unpaid invoice; its pending order is cancelled', voidInvoice],
      [
        'mark_uncollectible',
        'Write off an unpaid invoice as uncollectible',
        markInvoiceUncollectible,
      ],
    ] as const
    for (const [action, summary, run] of transitions) {
      app.post(
        `/invoices/:id/${action}`,
        {
          schema: {
            tags,
            summary,
            params: IdParams,
            body: EmptyBody,
            response: { 200: InvoiceSchema, ...errors },
          },
        },
        async (request) => {
          const { invoice } = await run(
            deps.db,
            principalOf(request),
            request.params.id,
            deps.clock,
          )
          return toInvoiceResponse(invoice, await linesOfInvoice(deps.db, invoice.id))
        },
      )
    }
  }
}
