import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { eventsOf } from '../fixtures.ts'
import {
  type ApiResponse,
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'
import {
  createPayment,
  getInvoice,
  getPayment,
  invoiceToPay,
  type PaymentBody,
} from '../payments-helpers.ts'

interface DiscountBody {
  id: string
  object: 'discount'
  code: string
  percent_off: number | null
  amount_off: string | null
  currency: string | null
  max_redemptions: number | null
  times_redeemed: number
  expires_at: string | null
  active: boolean
  valid: boolean
  metadata: Record<string, string>
  created_at: string
  updated_at: string
}
interface InvoiceBody {
  id: string
  customer_id: string
  currency: string
  invoice_status: string
  subtotal: string
  total_discount: string
  total: string
  amount_due: string
  amount_remaining: string
  discount_code: string | null
}
interface List<T> {
  items: T[]
  pagination: { total: number; limit: number; offset: number }
}

let ctx: TestContext
let other: TenantFixture
/** A customer of the main tenant's test environment, billed by most invoices here. */
let customerId: string

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other')
  customerId = await newCustomer()
})
afterAll(() => ctx.close())

let codeCounter = 0
/** A code no other test in this file uses. */
function uniqueCode(prefix = 'CODE') {
  codeCounter += 1
  return `${prefix}${codeCounter}`
}

async function newCustomer(key?: string) {
  const res = await ctx.post<{ id: string }>(
    '/v1/customers',
    { name: 'Ada Lovelace', email: 'ada@example.com' },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body.id
}

async function newDiscount(body: Record<string, unknown> = {}, key?: string) {
  const res = await ctx.post<DiscountBody>(
    '/v1/discounts',
    { code: uniqueCode(), percent_off: 10, ...body },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body
}

interface InvoiceOptions {
  unitAmount?: string
  quantity?: number
  currency?: string
  customer?: string
  key?: string
}

/** POST /v1/invoices with one line and the given discount code. */
function invoiceWithCode<T = InvoiceBody>(
  code: string,
  options: InvoiceOptions = {},
): Promise<ApiResponse<T>> {
  return ctx.post<T>(
    '/v1/invoices',
    {
      customer_id: options.customer ?? customerId,
      currency: options.currency ?? 'usd',
      lines: [
        {
          description: 'Pro plan',
          quantity: options.quantity ?? 1,
          unit_amount: options.unitAmount ?? '100.00',
        },
      ],
      discount_code: code,
    },
    options.key === undefined ? {} : { key: options.key },
  )
}

async function discountById(id: string, key?: string) {
  const res = await ctx.get<DiscountBody>(`/v1/discounts/${id}`, key === undefined ? {} : { key })
  expect(res.status).toBe(200)
  return res.body
}

function redemptionsOf(discountId: string) {
  return ctx.db
    .selectFrom('discount_redemptions')
    .selectAll()
    .where('discount_id', '=', discountId)
    .execute()
}

describe('create a discount', () => {
  test('percent_off: every key present, valid, amount fields null', async () => {
    const res = await ctx.post<DiscountBody>('/v1/discounts', {
      code: 'Spring25',
      percent_off: 12.5,
      metadata: { campaign: 'spring' },
    })
    expect(res.status).toBe(201)
    expect(res.body).toEqual({
      id: expect.stringMatching(/^disc_/),
      object: 'discount',
      code: 'Spring25',
      percent_off: 12.5,
      amount_off: null,
      currency: null,
      max_redemptions: null,
      times_redeemed: 0,
      expires_at: null,
      active: true,
      valid: true,
      metadata: { campaign: 'spring' },
      created_at: ctx.clock.now().toISOString(),
      updated_at: ctx.clock.now().toISOString(),
    })
    expect(await discountById(res.body.id)).toEqual(res.body)
  })

  test('amount_off with currency: decimal string, currency lowercased, limits kept', async () => {
    const expiresAt = new Date(ctx.clock.now().getTime() + 86_400_000).toISOString()
    const res = await ctx.post<DiscountBody>('/v1/discounts', {
      code: 'FIVE_OFF-usd',
      amount_off: '5',
      currency: 'USD',
      max_redemptions: 3,
      expires_at: expiresAt,
    })
    expect(res.status).toBe(201)
    expect(res.body).toEqual({
      id: expect.stringMatching(/^disc_/),
      object: 'discount',
      code: 'FIVE_OFF-usd',
      percent_off: null,
      amount_off: '5.00',
      currency: 'usd',
      max_redemptions: 3,
      times_redeemed: 0,
      expires_at: expiresAt,
      active: true,
      valid: true,
      metadata: {},
      created_at: ctx.clock.now().toISOString(),
      updated_at: ctx.clock.now().toISOString(),
    })
  })

  test.each([
    [
      { amount_off: '500', currency: 'jpy' },
      { amount_off: '500', currency: 'jpy' },
    ],
    [
      { amount_off: 7.5, currency: 'eur' },
      { amount_off: '7.50', currency: 'eur' },
    ],
    [
      { amount_off: '1.234', currency: 'bhd' },
      { amount_off: '1.234', currency: 'bhd' },
    ],
    [{ percent_off: 100 }, { percent_off: 100 }],
    [{ percent_off: 0.01 }, { percent_off: 0.01 }],
    [{ percent_off: 33.33 }, { percent_off: 33.33 }],
    [{ percent_off: 12.1 }, { percent_off: 12.1 }],
  ])('%j is stored as %j', async (body, expected) => {
    const res = await ctx.post<DiscountBody>('/v1/discounts', { code: uniqueCode(), ...body })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject(expected)
  })

  test('a discount created inactive is not valid', async () => {
    const discount = await newDiscount({ active: false })
    expect(discount).toMatchObject({ active: false, valid: false })
  })

  test('a discount past its expires_at is not valid; one cannot be made already expired (400)', async () => {
    const discount = await newDiscount({
      expires_at: new Date(ctx.clock.now().getTime() + 1000).toISOString(),
    })
    expect(discount).toMatchObject({ active: true, valid: true })
    ctx.clock.advance(2000)
    expect(await discountById(discount.id)).toMatchObject({ active: true, valid: false })
    const late = await ctx.post<ErrorBody>('/v1/discounts', {
      code: uniqueCode(),
      percent_off: 10,
      expires_at: new Date(ctx.clock.now().getTime() - 1000).toISOString(),
    })
    expect(late.status, late.text).toBe(400)
    expect(late.body.error.details).toMatchObject({ field: 'expires_at' })
  })

  test.each([
    ['both percent_off and amount_off', { percent_off: 10, amount_off: '5', currency: 'usd' }],
    ['neither percent_off nor amount_off', { percent_off: undefined }],
    ['amount_off without currency', { percent_off: undefined, amount_off: '5' }],
    ['currency with percent_off', { currency: 'usd' }],
    ['percent_off with three decimals', { percent_off: 12.345 }],
    ['percent_off 0', { percent_off: 0 }],
    ['percent_off 101', { percent_off: 101 }],
    ['percent_off 100.01', { percent_off: 100.01 }],
    ['negative percent_off', { percent_off: -5 }],
    ['percent_off that rounds to 0.00', { percent_off: 0.000000001 }],
    ['percent_off as text', { percent_off: 'ten' }],
    ['amount_off 0', { percent_off: undefined, amount_off: '0', currency: 'usd' }],
    ['negative amount_off', { percent_off: undefined, amount_off: '-5', currency: 'usd' }],
    [
      'amount_off with three decimals in usd',
      {
        percent_off: undefined,
        amount_off: '1.001',
        currency: 'usd',
      },
    ],
    [
      'amount_off with decimals in jpy',
      {
        percent_off: undefined,
        amount_off: '1.5',
        currency: 'jpy',
      },
    ],
    ['amount_off not a number', { percent_off: undefined, amount_off: 'five', currency: 'usd' }],
    ['unknown currency', { percent_off: undefined, amount_off: '5', currency: 'zzz' }],
    [
      'amount_off beyond what fits',
      { percent_off: undefined, amount_off: '99999999999999999999', currency: 'usd' },
    ],
    ['code with a space', { code: 'SAVE 10' }],
    ['code with punctuation', { code: 'save10!' }],
    ['code with a non-ASCII letter', { code: 'ÜBER10' }],
    ['code with a dot', { code: 'save.10' }],
    ['empty code', { code: '' }],
    ['code longer than 64 characters', { code: 'A'.repeat(65) }],
    ['missing code', { code: undefined }],
    ['max_redemptions 0', { max_redemptions: 0 }],
    ['fractional max_redemptions', { max_redemptions: 1.5 }],
    ['expires_at not a date-time', { expires_at: 'next week' }],
    ['metadata value not a string', { metadata: { nested: { a: 1 } } }],
  ])('%s is 400 validation_error and stores nothing', async (_case, change) => {
    const code = uniqueCode('BAD')
    const body: Record<string, unknown> = { code, percent_off: 10, ...change }
    for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
    const res = await ctx.post<ErrorBody>('/v1/discounts', body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    const stored = await ctx.get<List<DiscountBody>>(`/v1/discounts?code=${code}`)
    expect(stored.body.items).toEqual([])
  })

  test('GET of an unknown discount is 404 not_found', async () => {
    const res = await ctx.get<ErrorBody>('/v1/discounts/disc_doesnotexist')
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
  })
})

describe('discount codes are unique per environment, ignoring case', () => {
  test('a duplicate code is 409 conflict whatever its case; the first one is untouched', async () => {
    const first = await newDiscount({ code: 'SAVE10', percent_off: 10 })
    for (const code of ['SAVE10', 'save10', 'Save10']) {
      const res = await ctx.post<ErrorBody>('/v1/discounts', {
        code,
        amount_off: '3',
        currency: 'usd',
      })
      expect(res.status).toBe(409)
      expect(res.body.error.code).toBe('conflict')
    }
    expect(await discountById(first.id)).toEqual(first)
    const all = await ctx.get<List<DiscountBody>>('/v1/discounts?code=save10')
    expect(all.body.items.map((d) => d.id)).toEqual([first.id])
  })

  test('the same code is fine in the live environment and in another tenant', async () => {
    await newDiscount({ code: 'WELCOME', percent_off: 10 })
    const live = await ctx.post<DiscountBody>(
      '/v1/discounts',
      { code: 'welcome', percent_off: 20 },
      { key: ctx.main.liveKey },
    )
    expect(live.status).toBe(201)
    const otherTenant = await ctx.post<DiscountBody>(
      '/v1/discounts',
      { code: 'WELCOME', percent_off: 30 },
      { key: other.key },
    )
    expect(otherTenant.status).toBe(201)
    const otherLive = await ctx.post<DiscountBody>(
      '/v1/discounts',
      { code: 'Welcome', percent_off: 40 },
      { key: other.liveKey },
    )
    expect(otherLive.status).toBe(201)
  })
})

describe('update a discount', () => {
  test('PATCH active, max_redemptions, expires_at and metadata', async () => {
    const discount = await newDiscount({ metadata: { a: '1', b: '2' } })
    ctx.clock.advance(5000)
    const expiresAt = new Date(ctx.clock.now().getTime() + 3_600_000).toISOString()
    const res = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, {
      active: false,
      max_redemptions: 5,
      expires_at: expiresAt,
      metadata: { b: '', c: '3' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      ...discount,
      active: false,
      valid: false,
      max_redemptions: 5,
      expires_at: expiresAt,
      metadata: { a: '1', c: '3' },
      updated_at: ctx.clock.now().toISOString(),
    })
    expect(await discountById(discount.id)).toEqual(res.body)

    const cleared = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, {
      active: true,
      max_redemptions: null,
      expires_at: null,
    })
    expect(cleared.status).toBe(200)
    expect(cleared.body).toMatchObject({
      active: true,
      valid: true,
      max_redemptions: null,
      expires_at: null,
      metadata: { a: '1', c: '3' },
    })
  })

  test('the code and its value are fixed: PATCH does not change them', async () => {
    const discount = await newDiscount({ code: uniqueCode('FIXED'), percent_off: 15 })
    const res = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, {
      code: 'CHANGED',
      percent_off: 90,
      amount_off: '5',
    })
    expect([200, 400]).toContain(res.status)
    const shown = await discountById(discount.id)
    expect(shown).toMatchObject({
      code: discount.code,
      percent_off: 15,
      amount_off: null,
      currency: null,
    })
  })

  test.each([
    [{ max_redemptions: -1 }, 'body.max_redemptions'],
    [{ max_redemptions: 2.5 }, 'body.max_redemptions'],
    [{ expires_at: 'soon' }, 'body.expires_at'],
    [{ active: 'perhaps' }, 'body.active'],
    [{ metadata: { k: { deep: true } } }, 'body.metadata'],
  ])('PATCH %j is 400 naming %s', async (body, field) => {
    const discount = await newDiscount()
    const res = await ctx.patch<ErrorBody>(`/v1/discounts/${discount.id}`, body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message.startsWith(field)).toBe(true)
    expect(await discountById(discount.id)).toEqual(discount)
  })

  test('PATCH max_redemptions 0 is 400 and keeps the limit (it must not mean "unlimited")', async () => {
    const discount = await newDiscount({ max_redemptions: 2 })
    const res = await ctx.patch<ErrorBody>(`/v1/discounts/${discount.id}`, { max_redemptions: 0 })
    expect(await discountById(discount.id)).toMatchObject({ max_redemptions: 2 })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })

  test('PATCH of an unknown discount is 404', async () => {
    const res = await ctx.patch<ErrorBody>('/v1/discounts/disc_doesnotexist', { active: false })
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
  })

  test('max_redemptions cannot go below times_redeemed; equal is allowed and uses it up', async () => {
    const discount = await newDiscount({ max_redemptions: 5 })
    for (let i = 0; i < 2; i++) expect((await invoiceWithCode(discount.code)).status).toBe(201)
    expect((await discountById(discount.id)).times_redeemed).toBe(2)
    const below = await ctx.patch<ErrorBody>(`/v1/discounts/${discount.id}`, { max_redemptions: 1 })
    expect(below.status).toBe(400)
    expect(below.body.error.code).toBe('validation_error')
    expect(below.body.error.details).toMatchObject({
      field: 'max_redemptions',
      times_redeemed: 2,
    })
    expect((await discountById(discount.id)).max_redemptions).toBe(5)
    const equal = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, {
      max_redemptions: 2,
    })
    expect(equal.status).toBe(200)
    expect(equal.body).toMatchObject({ max_redemptions: 2, times_redeemed: 2, valid: false })
    const refused = await invoiceWithCode<ErrorBody>(discount.code)
    expect(refused.status).toBe(400)
    expect(refused.body.error.code).toBe('validation_error')
    const raised = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, {
      max_redemptions: 3,
    })
    expect(raised.body).toMatchObject({ max_redemptions: 3, valid: true })
    expect((await invoiceWithCode(discount.code)).status).toBe(201)
  })
})

describe('valid', () => {
  test('turns false once expires_at has passed', async () => {
    const expiresAt = new Date(ctx.clock.now().getTime() + 60_000)
    const discount = await newDiscount({ expires_at: expiresAt.toISOString() })
    expect(discount.valid).toBe(true)
    ctx.clock.advance(59_999)
    expect((await discountById(discount.id)).valid).toBe(true)
    ctx.clock.advance(1)
    // Expiry is exclusive: at expires_at the code no longer works.
    const expired = await discountById(discount.id)
    expect(expired).toMatchObject({ active: true, valid: false })
    const list = await ctx.get<List<DiscountBody>>(`/v1/discounts?code=${discount.code}`)
    expect(list.body.items[0]?.valid).toBe(false)
    const redeem = await invoiceWithCode<ErrorBody>(discount.code)
    expect(redeem.status).toBe(400)
    expect(redeem.body.error.code).toBe('validation_error')
    expect((await discountById(discount.id)).times_redeemed).toBe(0)
  })

  test('turns false when deactivated, and back when reactivated', async () => {
    const discount = await newDiscount()
    const off = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, { active: false })
    expect(off.body).toMatchObject({ active: false, valid: false })
    const on = await ctx.patch<DiscountBody>(`/v1/discounts/${discount.id}`, { active: true })
    expect(on.body).toMatchObject({ active: true, valid: true })
  })

  test('turns false when every use is taken', async () => {
    const discount = await newDiscount({ max_redemptions: 1 })
    expect((await invoiceWithCode(discount.code)).status).toBe(201)
    expect(await discountById(discount.id)).toMatchObject({
      times_redeemed: 1,
      active: true,
      valid: false,
    })
  })
})

describe('list discounts', () => {
  let tenant: TenantFixture
  const list = (query: string) =>
    ctx.get<List<DiscountBody>>(`/v1/discounts${query}`, { key: tenant.key })
  const codes = (res: { body: List<DiscountBody> }) => res.body.items.map((d) => d.code)

  beforeAll(async () => {
    // A tenant of its own, so the list holds exactly these discounts.
    tenant = await ctx.createTenantFixture('Lists')
    const rows: [string, boolean][] = [
      ['CHARLIE', true],
      ['ALPHA', true],
      ['BRAVO', false],
      ['ECHO', true],
      ['DELTA', false],
    ]
    for (const [code, active] of rows) {
      ctx.clock.advance(1000)
      await newDiscount({ code, active }, tenant.key)
    }
  })

  test('newest first by default', async () => {
    const res = await list('')
    expect(res.status).toBe(200)
    expect(codes(res)).toEqual(['DELTA', 'ECHO', 'BRAVO', 'ALPHA', 'CHARLIE'])
    expect(res.body.pagination).toEqual({ total: 5, limit: 50, offset: 0 })
  })

  test.each([
    ['?active=true', ['ECHO', 'ALPHA', 'CHARLIE']],
    ['?active=false', ['DELTA', 'BRAVO']],
    ['?code=alpha', ['ALPHA']],
    ['?code=ALPHA', ['ALPHA']],
    ['?code=Bravo&active=false', ['BRAVO']],
    ['?code=bravo&active=true', []],
    ['?code=ALP', []],
  ])('filter %s', async (query, expected) => {
    const res = await list(query)
    expect(res.status).toBe(200)
    expect(codes(res)).toEqual(expected)
    expect(res.body.pagination.total).toBe(expected.length)
  })

  test('sort=code and -code', async () => {
    expect(codes(await list('?sort=code'))).toEqual(['ALPHA', 'BRAVO', 'CHARLIE', 'DELTA', 'ECHO'])
    expect(codes(await list('?sort=-code'))).toEqual(['ECHO', 'DELTA', 'CHARLIE', 'BRAVO', 'ALPHA'])
  })

  test('limit/offset and size/page give the same pages', async () => {
    const byOffset = await list('?sort=code&limit=2&offset=2')
    expect(codes(byOffset)).toEqual(['CHARLIE', 'DELTA'])
    expect(byOffset.body.pagination).toEqual({ total: 5, limit: 2, offset: 2 })
    const byPage = await list('?sort=code&size=2&page=1')
    expect(byPage.body).toEqual(byOffset.body)
    expect(codes(await list('?sort=code&size=2&page=2'))).toEqual(['ECHO'])
  })

  test.each([['?sort=percent_off'], ['?active=maybe'], ['?offset=1&page=1'], ['?limit=0']])(
    '%s is 400',
    async (query) => {
      const res = await ctx.get<ErrorBody>(`/v1/discounts${query}`, { key: tenant.key })
      expect(res.status).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    },
  )
})

describe('discount security', () => {
  test("another tenant's discount is 404 on GET and PATCH, and is left unchanged", async () => {
    const foreign = await newDiscount({ code: uniqueCode('FOREIGN') }, other.key)
    for (const res of [
      await ctx.get<ErrorBody>(`/v1/discounts/${foreign.id}`),
      await ctx.patch<ErrorBody>(`/v1/discounts/${foreign.id}`, { active: false }),
    ]) {
      expect(res.status).toBe(404)
      expect(res.body.error.code).toBe('not_found')
    }
    const list = await ctx.get<List<DiscountBody>>(`/v1/discounts?code=${foreign.code}`)
    expect(list.body.items).toEqual([])
    expect(await discountById(foreign.id, other.key)).toEqual(foreign)
  })

  test('the live environment does not see test discounts', async () => {
    const discount = await newDiscount()
    const key = ctx.main.liveKey
    expect((await ctx.get(`/v1/discounts/${discount.id}`, { key })).status).toBe(404)
    expect(
      (await ctx.patch(`/v1/discounts/${discount.id}`, { active: false }, { key })).status,
    ).toBe(404)
    const list = await ctx.get<List<DiscountBody>>(`/v1/discounts?code=${discount.code}`, { key })
    expect(list.body.items).toEqual([])
    expect((await discountById(discount.id)).active).toBe(true)
  })

  test('a customer token is 403 forbidden on every discount route', async () => {
    const discount = await newDiscount()
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customerId}/tokens`)
    expect(token.status).toBe(201)
    const key = token.body.token
    for (const res of [
      await ctx.get<ErrorBody>('/v1/discounts', { key }),
      await ctx.get<ErrorBody>(`/v1/discounts/${discount.id}`, { key }),
      await ctx.post<ErrorBody>('/v1/discounts', { code: uniqueCode(), percent_off: 99 }, { key }),
      await ctx.patch<ErrorBody>(`/v1/discounts/${discount.id}`, { active: false }, { key }),
    ]) {
      expect(res.status).toBe(403)
      expect(res.body.error.code).toBe('forbidden')
    }
    expect(await discountById(discount.id)).toEqual(discount)
  })

  test.each([
    ['GET', '/v1/discounts'],
    ['GET', '/v1/discounts/disc_x'],
    ['POST', '/v1/discounts'],
    ['PATCH', '/v1/discounts/disc_x'],
  ] as const)('%s %s without a key is 401 unauthorized', async (method, path) => {
    const res = await ctx.request<ErrorBody>(
      method,
      path,
      method === 'GET' ? undefined : { code: 'NOKEY', percent_off: 10 },
      { key: null },
    )
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })
})

describe('redeeming a discount on an invoice', () => {
  test('12.5% off 100.00: 12.50 off, one redemption recorded', async () => {
    const discount = await newDiscount({ code: uniqueCode('PCT'), percent_off: 12.5 })
    const res = await invoiceWithCode(discount.code.toLowerCase())
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      customer_id: customerId,
      currency: 'usd',
      invoice_status: 'DRAFT',
      subtotal: '100.00',
      total_discount: '12.50',
      total: '87.50',
      amount_due: '87.50',
      amount_remaining: '87.50',
      discount_code: discount.code,
    })
    const after = await discountById(discount.id)
    expect(after).toMatchObject({ times_redeemed: 1, valid: true })
    expect(after.updated_at).toBe(ctx.clock.now().toISOString())
    const rows = await redemptionsOf(discount.id)
    expect(rows).toEqual([
      expect.objectContaining({
        discount_id: discount.id,
        invoice_id: res.body.id,
        customer_id: customerId,
        environment_id: ctx.main.test.id,
        amount: 1250n,
      }),
    ])
  })

  test.each([
    // percent, unit amount, quantity, currency, discount, total
    [33.33, '0.10', 1, 'usd', '0.03', '0.07'],
    [33.33, '1.00', 1, 'usd', '0.33', '0.67'],
    [50, '0.01', 1, 'usd', '0.01', '0.00'],
    [12.5, '0.04', 1, 'usd', '0.01', '0.03'],
    [12.5, '0.03', 1, 'usd', '0.00', '0.03'],
    [66.67, '0.03', 1, 'usd', '0.02', '0.01'],
    [0.01, '100.00', 1, 'usd', '0.01', '99.99'],
    [15, '19.99', 3, 'usd', '9.00', '50.97'],
    [100, '49.99', 2, 'usd', '99.98', '0.00'],
    [12.5, '100', 1, 'jpy', '13', '87'],
    [10, '1.005', 1, 'bhd', '0.101', '0.904'],
  ])(
    '%s percent off %s × %i %s takes %s off (half up), total %s',
    async (percent, unitAmount, quantity, currency, off, total) => {
      const discount = await newDiscount({ percent_off: percent })
      const res = await invoiceWithCode(discount.code, { unitAmount, quantity, currency })
      expect(res.status).toBe(201)
      expect(res.body.total_discount).toBe(off)
      expect(res.body.total).toBe(total)
      expect(res.body.amount_due).toBe(total)
    },
  )

  test('amount_off takes its amount off, capped at the subtotal', async () => {
    const small = await newDiscount({ percent_off: undefined, amount_off: '30', currency: 'usd' })
    const partial = await invoiceWithCode(small.code)
    expect(partial.status).toBe(201)
    expect(partial.body).toMatchObject({
      subtotal: '100.00',
      total_discount: '30.00',
      total: '70.00',
      amount_due: '70.00',
    })
    const big = await newDiscount({ percent_off: undefined, amount_off: '150', currency: 'usd' })
    const capped = await invoiceWithCode(big.code)
    expect(capped.status).toBe(201)
    expect(capped.body).toMatchObject({
      subtotal: '100.00',
      total_discount: '100.00',
      total: '0.00',
      amount_due: '0.00',
    })
    const rows = await redemptionsOf(big.id)
    expect(rows.map((r) => r.amount)).toEqual([10000n])
    expect((await discountById(big.id)).times_redeemed).toBe(1)
  })

  test('amount_off in another currency is 400 and uses nothing', async () => {
    const euro = await newDiscount({ percent_off: undefined, amount_off: '5', currency: 'eur' })
    const res = await invoiceWithCode<ErrorBody>(euro.code, { currency: 'usd' })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.details).toMatchObject({ field: 'discount_code' })
    expect((await discountById(euro.id)).times_redeemed).toBe(0)
    expect(await redemptionsOf(euro.id)).toEqual([])
    const eur = await invoiceWithCode(euro.code, { currency: 'EUR' })
    expect(eur.status).toBe(201)
    expect(eur.body).toMatchObject({ currency: 'eur', total_discount: '5.00', total: '95.00' })
  })

  test('a percent code applies in any currency', async () => {
    const discount = await newDiscount({ percent_off: 10 })
    const jpy = await invoiceWithCode(discount.code, { currency: 'jpy', unitAmount: '1000' })
    expect(jpy.status).toBe(201)
    expect(jpy.body).toMatchObject({ subtotal: '1000', total_discount: '100', total: '900' })
  })

  test.each([
    ['an unknown code', async () => 'NOSUCHCODE'],
    ['an inactive code', async () => (await newDiscount({ active: false })).code],
    [
      'an expired code',
      async () => {
        const discount = await newDiscount({
          expires_at: new Date(ctx.clock.now().getTime() + 1000).toISOString(),
        })
        ctx.clock.advance(2000)
        return discount.code
      },
    ],
    [
      'a used-up code',
      async () => {
        const discount = await newDiscount({ max_redemptions: 1 })
        expect((await invoiceWithCode(discount.code)).status).toBe(201)
        return discount.code
      },
    ],
    [
      "another tenant's code",
      async () => (await newDiscount({ code: uniqueCode('THEIRS') }, other.key)).code,
    ],
    [
      "the live environment's code",
      async () => (await newDiscount({ code: uniqueCode('LIVE') }, ctx.main.liveKey)).code,
    ],
  ])('%s is 400 validation_error and creates no invoice', async (_case, makeCode) => {
    const code = await makeCode()
    const customer = await newCustomer()
    const res = await invoiceWithCode<ErrorBody>(code, { customer })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.details).toMatchObject({ field: 'discount_code' })
    const invoices = await ctx.get<List<InvoiceBody>>(`/v1/invoices?customer_id=${customer}`)
    expect(invoices.body.items).toEqual([])
  })

  test('times_redeemed counts every invoice, one redemption row each', async () => {
    const discount = await newDiscount({ percent_off: 20 })
    const invoiceIds: string[] = []
    for (let i = 1; i <= 3; i++) {
      const res = await invoiceWithCode(discount.code)
      expect(res.status).toBe(201)
      invoiceIds.push(res.body.id)
      expect((await discountById(discount.id)).times_redeemed).toBe(i)
    }
    const rows = await redemptionsOf(discount.id)
    expect(rows.map((r) => r.invoice_id).sort()).toEqual([...invoiceIds].sort())
    expect(rows.every((r) => r.amount === 2000n)).toBe(true)
  })

  test('a live invoice redeems the live code of the same name, not the test one', async () => {
    const code = uniqueCode('BOTH')
    const testDiscount = await newDiscount({ code, percent_off: 10 })
    const liveDiscount = await newDiscount({ code, percent_off: 50 }, ctx.main.liveKey)
    const liveCustomer = await newCustomer(ctx.main.liveKey)
    const res = await invoiceWithCode(code, { key: ctx.main.liveKey, customer: liveCustomer })
    expect(res.status).toBe(201)
    expect(res.body.total_discount).toBe('50.00')
    expect((await discountById(liveDiscount.id, ctx.main.liveKey)).times_redeemed).toBe(1)
    expect((await discountById(testDiscount.id)).times_redeemed).toBe(0)
  })
})

describe('concurrent redemptions never exceed max_redemptions', () => {
  test.each([
    [1, 10],
    [3, 10],
  ])('max_redemptions %i with %i invoices at once', async (max, attempts) => {
    const discount = await newDiscount({ max_redemptions: max, percent_off: 10 })
    const customer = await newCustomer()
    const responses = await Promise.all(
      Array.from({ length: attempts }, () =>
        invoiceWithCode<InvoiceBody | ErrorBody>(discount.code, { customer }),
      ),
    )
    const createdIds: string[] = []
    for (const res of responses) {
      if ('id' in res.body) {
        expect(res.status).toBe(201)
        expect(res.body).toMatchObject({ total_discount: '10.00', discount_code: discount.code })
        createdIds.push(res.body.id)
      } else {
        // The loser either lost the row race (409) or read the code once it was used up (400).
        expect([400, 409]).toContain(res.status)
        expect(res.body.error.code).toBe(res.status === 409 ? 'conflict' : 'validation_error')
      }
    }
    expect(createdIds).toHaveLength(max)
    expect(await discountById(discount.id)).toMatchObject({
      times_redeemed: max,
      max_redemptions: max,
      valid: false,
    })
    const rows = await redemptionsOf(discount.id)
    expect(rows.map((r) => r.invoice_id).sort()).toEqual([...createdIds].sort())
    // The refused requests rolled back: no invoice without its redemption.
    const invoices = await ctx.db
      .selectFrom('invoices')
      .select('id')
      .where('customer_id', '=', customer)
      .execute()
    expect(invoices.map((i) => i.id).sort()).toEqual([...createdIds].sort())
  })
})

describe('a discount code with a payment already made', () => {
  /** A finalized invoice of 100.00 of a new customer, and a new 10% code. */
  async function invoiceAndCode() {
    const { customer, invoice } = await invoiceToPay(ctx)
    return { customer, invoice, discount: await newDiscount({ percent_off: 10 }) }
  }

  test('PUT /invoices/:id/payment naming the existing payment with a discount_code is 409, and the code is not used', async () => {
    const { customer, invoice, discount } = await invoiceAndCode()
    const created = await ctx.put<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'PLATFORM',
      account_id: customer.id,
    })
    expect(created.status, created.text).toBe(201)
    const res = await ctx.put<ErrorBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'PLATFORM',
      account_id: customer.id,
      payment_id: created.body.id,
      discount_code: discount.code,
    })
    // As without payment_id. Before, the code was dropped: 200 with the undiscounted payment.
    expect(res.status, res.text).toBe(409)
    expect(res.body.error).toMatchObject({
      code: 'conflict',
      details: { invoice_id: invoice.id, payment_id: created.body.id },
    })
    expect(res.body.error.message).toMatch(/PATCH \/v1\/invoices\/.*\/payment/)
    expect(await discountById(discount.id)).toMatchObject({ times_redeemed: 0 })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({
      total_discount: '0.00',
      amount_due: '100.00',
    })
    expect((await getPayment(ctx, created.body.id)).amount).toBe('100.00')
  })

  test.each([
    ['a code the first request did not have', undefined, 'CODE'],
    ['no code where the first request had one', 'CODE', undefined],
    ['another code', 'CODE', 'OTHER'],
  ])(
    'POST /payments with an idempotency_key used before, with %s, is 422 idempotency_mismatch',
    async (_, first, repeat) => {
      const { invoice, discount } = await invoiceAndCode()
      const other = await newDiscount({ percent_off: 10 })
      const codes: Record<string, string> = { CODE: discount.code, OTHER: other.code }
      const key = `idem-${discount.code}`
      const body = (code: string | undefined) => ({
        destination_id: invoice.id,
        payment_method_type: 'OFFLINE',
        amount: '90.00',
        process_payment: false,
        idempotency_key: key,
        ...(code && { discount_code: codes[code] }),
      })
      const made = await createPayment(ctx, body(first))
      expect(made.status, made.text).toBe(201)
      const again = await createPayment(ctx, body(repeat))
      // Before, the first payment was replayed (201) and the code silently not applied.
      expect(again.status, again.text).toBe(422)
      expect((again.body as unknown as ErrorBody).error).toMatchObject({
        code: 'idempotency_mismatch',
        details: { idempotency_key: key, payment_id: made.body.id },
      })
      expect(await discountById(other.id)).toMatchObject({ times_redeemed: 0 })
    },
  )

  test('the same idempotency_key and the same code in another case replays the payment', async () => {
    const { invoice, discount } = await invoiceAndCode()
    const body = (code: string) => ({
      destination_id: invoice.id,
      payment_method_type: 'OFFLINE',
      amount: '90.00',
      process_payment: false,
      idempotency_key: `idem-${discount.code}`,
      discount_code: code,
    })
    const made = await createPayment(ctx, body(discount.code))
    expect(made.status, made.text).toBe(201)
    const again = await createPayment(ctx, body(discount.code.toLowerCase()))
    expect(again.status, again.text).toBe(201)
    expect(again.body.id).toBe(made.body.id)
    expect(await discountById(discount.id)).toMatchObject({ times_redeemed: 1 })
  })
})

describe('PATCH /invoices/:id/payment with a discount code', () => {
  // docs/webhooks.md: `payment.updated` is sent when a payment's amounts change without a move.
  test('lowers the open payment to what the invoice owes and announces it once (payment.updated)', async () => {
    const { customer, invoice } = await invoiceToPay(ctx)
    const discount = await newDiscount({ percent_off: 10 })
    const put = await ctx.put<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      type: 'PLATFORM',
      account_id: customer.id,
    })
    expect(put.status, put.text).toBe(201)
    expect(put.body.amount).toBe('100.00')
    // Data alone changes no amount: nothing is announced.
    const data = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      some_data: { order: '42' },
    })
    expect(data.status, data.text).toBe(200)
    expect(await eventsOf(ctx, put.body.id, 'payment.updated')).toEqual([])

    const patched = await ctx.patch<PaymentBody>(`/v1/invoices/${invoice.id}/payment`, {
      discount_code: discount.code,
    })
    expect(patched.status, patched.text).toBe(200)
    expect(patched.body).toMatchObject({ amount: '90.00', payment_status: 'INITIATED' })
    const updated = await eventsOf(ctx, put.body.id, 'payment.updated')
    expect(updated).toHaveLength(1)
    expect(updated[0]?.data.object).toMatchObject({
      id: put.body.id,
      amount: '90.00',
      payment_status: 'INITIATED',
    })
    expect(await getInvoice(ctx, invoice.id)).toMatchObject({ amount_remaining: '90.00' })
  })
})
