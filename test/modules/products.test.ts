import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import {
  createTestContext,
  type ErrorBody,
  type TenantFixture,
  type TestContext,
} from '../harness.ts'

interface PriceBody {
  id: string
  object: 'price'
  product_id: string
  amount: string
  currency: string
  interval: string | null
  interval_count: number
  active: boolean
  created_at: string
}
interface ProductBody {
  id: string
  object: 'product'
  name: string
  description: string | null
  type: string
  active: boolean
  prices: PriceBody[]
  metadata: Record<string, string>
  created_at: string
  updated_at: string
}
interface List<T> {
  items: T[]
  pagination: { total: number; limit: number; offset: number }
}

let ctx: TestContext
let other: TenantFixture

beforeAll(async () => {
  ctx = await createTestContext()
  other = await ctx.createTenantFixture('Other')
})
afterAll(() => ctx.close())

async function newProduct(body: Record<string, unknown> = {}, key?: string) {
  const res = await ctx.post<ProductBody>(
    '/v1/products',
    {
      name: 'Starter pack',
      type: 'one_time',
      prices: [{ amount: '20.00', currency: 'usd' }],
      ...body,
    },
    key === undefined ? {} : { key },
  )
  expect(res.status).toBe(201)
  return res.body
}

/** The manual clock's now, as the API shows it. */
function nowIso() {
  return ctx.clock.now().toISOString()
}

describe('create a product', () => {
  test('one_time: every key present, amounts as decimal strings, currency lowercased', async () => {
    ctx.clock.advance(1000)
    const res = await ctx.post<ProductBody>('/v1/products', {
      name: 'Setup fee',
      description: 'Once, at the start',
      type: 'one_time',
      prices: [
        { amount: '20', currency: 'USD' },
        { amount: 500, currency: 'jpy' },
        { amount: '1.234', currency: 'bhd' },
      ],
      metadata: { sku: 'setup-1' },
    })
    expect(res.status).toBe(201)
    const id = res.body.id
    expect(res.body).toEqual({
      id: expect.stringMatching(/^prod_/),
      object: 'product',
      name: 'Setup fee',
      description: 'Once, at the start',
      type: 'one_time',
      active: true,
      prices: [
        {
          id: expect.stringMatching(/^price_/),
          object: 'price',
          product_id: id,
          amount: '20.00',
          currency: 'usd',
          interval: null,
          interval_count: 1,
          active: true,
          created_at: nowIso(),
        },
        {
          id: expect.stringMatching(/^price_/),
          object: 'price',
          product_id: id,
          amount: '500',
          currency: 'jpy',
          interval: null,
          interval_count: 1,
          active: true,
          created_at: nowIso(),
        },
        {
          id: expect.stringMatching(/^price_/),
          object: 'price',
          product_id: id,
          amount: '1.234',
          currency: 'bhd',
          interval: null,
          interval_count: 1,
          active: true,
          created_at: nowIso(),
        },
      ],
      metadata: { sku: 'setup-1' },
      created_at: ctx.clock.now().toISOString(),
      updated_at: ctx.clock.now().toISOString(),
    })
    expect(new Set(res.body.prices.map((p) => p.id)).size).toBe(3)
    expect((await ctx.get<ProductBody>(`/v1/products/${id}`)).body).toEqual(res.body)
  })

  test('recurring: prices keep interval and interval_count; description and metadata default', async () => {
    const res = await ctx.post<ProductBody>('/v1/products', {
      name: 'Pro plan',
      type: 'recurring',
      prices: [
        { amount: '20.00', currency: 'usd', interval: 'month' },
        { amount: '200.00', currency: 'eur', interval: 'year' },
        { amount: '60', currency: 'usd', interval: 'month', interval_count: 3 },
        { amount: '5.5', currency: 'usd', interval: 'week', interval_count: 2 },
        { amount: '1', currency: 'usd', interval: 'day', interval_count: 365 },
      ],
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({
      object: 'product',
      name: 'Pro plan',
      description: null,
      type: 'recurring',
      active: true,
      metadata: {},
    })
    expect(
      res.body.prices.map((p) => [p.amount, p.currency, p.interval, p.interval_count, p.active]),
    ).toEqual([
      ['20.00', 'usd', 'month', 1, true],
      ['200.00', 'eur', 'year', 1, true],
      ['60.00', 'usd', 'month', 3, true],
      ['5.50', 'usd', 'week', 2, true],
      ['1.00', 'usd', 'day', 365, true],
    ])
  })

  test('credit_top_up: no interval, can start inactive; a free price is refused (it would top up nothing)', async () => {
    const res = await ctx.post<ProductBody>('/v1/products', {
      name: 'Credit 50',
      type: 'credit_top_up',
      active: false,
      prices: [
        { amount: '50.00', currency: 'usd' },
        { amount: '20.00', currency: 'eur' },
      ],
    })
    expect(res.status).toBe(201)
    expect(res.body).toMatchObject({ type: 'credit_top_up', active: false, description: null })
    expect(res.body.prices.map((p) => [p.amount, p.interval, p.interval_count])).toEqual([
      ['50.00', null, 1],
      ['20.00', null, 1],
    ])
    const free = await ctx.patch<ErrorBody>(`/v1/products/${res.body.id}`, {
      add_prices: [{ amount: '0', currency: 'usd' }],
    })
    expect(free.status).toBe(400)
    expect(free.body.error.details).toMatchObject({ field: 'add_prices[0].amount' })
  })

  test.each([
    [
      'recurring price without interval',
      { type: 'recurring', prices: [{ amount: '20', currency: 'usd' }] },
      'prices[0].interval',
    ],
    [
      'recurring: the second price without interval',
      {
        type: 'recurring',
        prices: [
          { amount: '20', currency: 'usd', interval: 'month' },
          { amount: '20', currency: 'eur' },
        ],
      },
      'prices[1].interval',
    ],
    [
      'interval on a one_time product',
      { type: 'one_time', prices: [{ amount: '20', currency: 'usd', interval: 'month' }] },
      'prices[0].interval',
    ],
    [
      'interval_count on a credit_top_up product',
      { type: 'credit_top_up', prices: [{ amount: '20', currency: 'usd', interval_count: 2 }] },
      'prices[0].interval',
    ],
    ['negative amount', { prices: [{ amount: '-1.00', currency: 'usd' }] }, 'prices[0].amount'],
    [
      'negative amount as a number',
      { prices: [{ amount: -5, currency: 'usd' }] },
      'prices[0].amount',
    ],
    [
      'three decimals in usd',
      { prices: [{ amount: '1.001', currency: 'usd' }] },
      'prices[0].amount',
    ],
    ['decimals in jpy', { prices: [{ amount: '1.5', currency: 'jpy' }] }, 'prices[0].amount'],
    [
      'four decimals in bhd',
      { prices: [{ amount: '1.2345', currency: 'bhd' }] },
      'prices[0].amount',
    ],
    ['not a number', { prices: [{ amount: 'ten', currency: 'usd' }] }, 'prices[0].amount'],
    [
      'an amount beyond what fits',
      { prices: [{ amount: '99999999999999999999', currency: 'usd' }] },
      'prices[0].amount',
    ],
    ['unknown currency', { prices: [{ amount: '1', currency: 'zzz' }] }, 'prices[0].currency'],
    [
      'currency of two letters',
      { prices: [{ amount: '1', currency: 'us' }] },
      'body.prices.0.currency',
    ],
    ['empty prices array', { prices: [] }, 'body.prices'],
    ['missing prices', { prices: undefined }, 'body.prices'],
    ['missing name', { name: undefined }, 'body.name'],
    ['empty name', { name: '' }, 'body.name'],
    ['unknown type', { type: 'lifetime' }, 'body.type'],
    [
      'unknown interval',
      { type: 'recurring', prices: [{ amount: '1', currency: 'usd', interval: 'fortnight' }] },
      'body.prices.0.interval',
    ],
    [
      'interval_count 0',
      {
        type: 'recurring',
        prices: [{ amount: '1', currency: 'usd', interval: 'month', interval_count: 0 }],
      },
      'body.prices.0.interval_count',
    ],
    [
      'amount that is not a decimal',
      { prices: [{ amount: true, currency: 'usd' }] },
      'body.prices.0.amount',
    ],
    ['metadata value not a string', { metadata: { n: { deep: 1 } } }, 'body.metadata.n'],
  ])('%s is 400 validation_error', async (_case, change, field) => {
    const body: Record<string, unknown> = {
      name: 'Bad product',
      type: 'one_time',
      prices: [{ amount: '1.00', currency: 'usd' }],
      ...change,
    }
    for (const key of Object.keys(body)) if (body[key] === undefined) delete body[key]
    const before = await ctx.get<List<ProductBody>>('/v1/products?limit=1')
    const res = await ctx.post<ErrorBody>('/v1/products', body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message.startsWith(field)).toBe(true)
    const after = await ctx.get<List<ProductBody>>('/v1/products?limit=1')
    expect(after.body.pagination.total).toBe(before.body.pagination.total)
  })
})

describe('retrieve and update a product', () => {
  test('GET by id returns the product; an unknown id is 404 not_found', async () => {
    const product = await newProduct({ name: 'Lookup' })
    const res = await ctx.get<ProductBody>(`/v1/products/${product.id}`)
    expect(res.status).toBe(200)
    expect(res.body).toEqual(product)
    const missing = await ctx.get<ErrorBody>('/v1/products/prod_doesnotexist')
    expect(missing.status).toBe(404)
    expect(missing.body.error.code).toBe('not_found')
  })

  test('PATCH name, description to null, active, and merges metadata ("" removes a key)', async () => {
    const product = await newProduct({
      name: 'Old name',
      description: 'Old description',
      metadata: { a: '1', b: '2' },
    })
    ctx.clock.advance(5000)
    const res = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      name: 'New name',
      description: null,
      active: false,
      metadata: { b: '', c: '3' },
    })
    expect(res.status).toBe(200)
    expect(res.body).toEqual({
      ...product,
      name: 'New name',
      description: null,
      active: false,
      metadata: { a: '1', c: '3' },
      updated_at: ctx.clock.now().toISOString(),
    })
    expect((await ctx.get<ProductBody>(`/v1/products/${product.id}`)).body).toEqual(res.body)
    const reactivated = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      active: true,
    })
    expect(reactivated.body).toMatchObject({
      name: 'New name',
      description: null,
      active: true,
      metadata: { a: '1', c: '3' },
    })
  })

  test('an empty PATCH changes nothing but updated_at', async () => {
    const product = await newProduct({ description: 'kept', metadata: { k: 'v' } })
    ctx.clock.advance(1000)
    const res = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {})
    expect(res.status).toBe(200)
    expect(res.body).toEqual({ ...product, updated_at: ctx.clock.now().toISOString() })
  })

  test('add_prices appends new prices after the existing ones', async () => {
    const product = await newProduct({
      type: 'recurring',
      prices: [{ amount: '10', currency: 'usd', interval: 'month' }],
    })
    ctx.clock.advance(1000)
    const res = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      add_prices: [
        { amount: '100', currency: 'USD', interval: 'year' },
        { amount: '1500', currency: 'jpy', interval: 'month', interval_count: 6 },
      ],
    })
    expect(res.status).toBe(200)
    expect(res.body.prices).toHaveLength(3)
    expect(res.body.prices[0]).toEqual(product.prices[0])
    expect(res.body.prices.slice(1)).toEqual([
      {
        id: expect.stringMatching(/^price_/),
        object: 'price',
        product_id: product.id,
        amount: '100.00',
        currency: 'usd',
        interval: 'year',
        interval_count: 1,
        active: true,
        created_at: nowIso(),
      },
      {
        id: expect.stringMatching(/^price_/),
        object: 'price',
        product_id: product.id,
        amount: '1500',
        currency: 'jpy',
        interval: 'month',
        interval_count: 6,
        active: true,
        created_at: nowIso(),
      },
    ])
  })

  test('add_prices appends even when the PATCH comes in the same millisecond as the create', async () => {
    // Prices created and added in the same millisecond share created_at; their position keeps them in order.
    const product = await newProduct({
      prices: [
        { amount: '1', currency: 'usd' },
        { amount: '2', currency: 'usd' },
        { amount: '3', currency: 'usd' },
      ],
    })
    const res = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      add_prices: [{ amount: '4', currency: 'usd' }],
    })
    expect(res.status).toBe(200)
    expect(res.body.prices.map((p) => p.amount)).toEqual(['1.00', '2.00', '3.00', '4.00'])
  })

  test('add_prices follows the product type rules and rolls back the whole PATCH', async () => {
    const product = await newProduct({ name: 'Atomic' })
    const res = await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, {
      name: 'Should not stick',
      add_prices: [{ amount: '5', currency: 'usd', interval: 'month' }],
    })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message).toContain('add_prices[0].interval')
    const recurring = await newProduct({
      type: 'recurring',
      prices: [{ amount: '5', currency: 'usd', interval: 'month' }],
    })
    const noInterval = await ctx.patch<ErrorBody>(`/v1/products/${recurring.id}`, {
      add_prices: [{ amount: '5', currency: 'usd' }],
    })
    expect(noInterval.status).toBe(400)
    const tooPrecise = await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, {
      add_prices: [{ amount: '5.001', currency: 'usd' }],
    })
    expect(tooPrecise.status).toBe(400)
    expect(tooPrecise.body.error.message).toContain('add_prices[0].amount')
    const shown = await ctx.get<ProductBody>(`/v1/products/${product.id}`)
    expect(shown.body).toEqual(product)
  })

  test('deactivate_prices marks prices inactive and keeps them on the product', async () => {
    const product = await newProduct({
      prices: [
        { amount: '10', currency: 'usd' },
        { amount: '9', currency: 'eur' },
      ],
    })
    const [usd, eur] = product.prices
    if (!usd || !eur) throw new Error('expected two prices')
    ctx.clock.advance(1000)
    const res = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      deactivate_prices: [usd.id],
      add_prices: [{ amount: '12', currency: 'usd' }],
    })
    expect(res.status).toBe(200)
    expect(res.body.prices.map((p) => [p.id, p.amount, p.active])).toEqual([
      [usd.id, '10.00', false],
      [eur.id, '9.00', true],
      [expect.any(String), '12.00', true],
    ])
    expect(res.body.active).toBe(true)
    // Deactivating again is harmless.
    const again = await ctx.patch<ProductBody>(`/v1/products/${product.id}`, {
      deactivate_prices: [usd.id],
    })
    expect(again.status).toBe(200)
    expect(again.body.prices.find((p) => p.id === usd.id)?.active).toBe(false)
  })

  test("deactivating an unknown price, or another product's price, is 404 and changes nothing", async () => {
    const product = await newProduct({ name: 'Keep me' })
    const otherProduct = await newProduct({ name: 'Neighbour' })
    const [own] = product.prices
    const [neighbour] = otherProduct.prices
    if (!own || !neighbour) throw new Error('expected prices')
    const unknown = await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, {
      name: 'Renamed',
      deactivate_prices: [own.id, 'price_doesnotexist'],
    })
    expect(unknown.status).toBe(404)
    expect(unknown.body.error.code).toBe('not_found')
    const foreign = await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, {
      deactivate_prices: [neighbour.id],
    })
    expect(foreign.status).toBe(404)
    expect((await ctx.get<ProductBody>(`/v1/products/${product.id}`)).body).toEqual(product)
    expect((await ctx.get<ProductBody>(`/v1/products/${otherProduct.id}`)).body).toEqual(
      otherProduct,
    )
  })

  test.each([
    [{ name: '' }, 'body.name'],
    [{ active: 'nope' }, 'body.active'],
    [{ metadata: { deep: { x: 1 } } }, 'body.metadata'],
    [{ add_prices: [{ amount: '1' }] }, 'body.add_prices.0.currency'],
    [{ deactivate_prices: [{ id: 'price_1' }] }, 'body.deactivate_prices.0'],
  ])('PATCH %j is 400 naming %s', async (body, field) => {
    const product = await newProduct()
    const res = await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, body)
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
    expect(res.body.error.message.startsWith(field)).toBe(true)
  })

  test('PATCH of an unknown product is 404', async () => {
    const res = await ctx.patch<ErrorBody>('/v1/products/prod_doesnotexist', { name: 'x' })
    expect(res.status).toBe(404)
    expect(res.body.error.code).toBe('not_found')
  })

  test("add_prices appends after the existing prices even when this node's clock is behind the one that made them", async () => {
    const created = await ctx.post<ProductBody>('/v1/products', {
      name: 'Skewed',
      type: 'one_time',
      metadata: { sku: 'p-1', removed: '' },
      prices: [
        { amount: '1.00', currency: 'usd' },
        { amount: '2.00', currency: 'usd' },
      ],
    })
    expect(created.status, created.text).toBe(201)
    // A metadata key sent as "" on create is not set (Stripe's rule).
    expect(created.body.metadata).toEqual({ sku: 'p-1' })
    // Nodes sharing one database: this one's clock a second behind the one that created it.
    const start = ctx.clock.now()
    ctx.clock.set(new Date(start.getTime() - 1000))
    try {
      const patched = await ctx.patch<ProductBody>(`/v1/products/${created.body.id}`, {
        add_prices: [{ amount: '3.00', currency: 'usd' }],
      })
      expect(patched.status, patched.text).toBe(200)
      expect(patched.body.prices.map((p) => p.amount)).toEqual(['1.00', '2.00', '3.00'])
      const read = await ctx.get<ProductBody>(`/v1/products/${created.body.id}`)
      expect(read.body.prices.map((p) => p.amount)).toEqual(['1.00', '2.00', '3.00'])
    } finally {
      ctx.clock.set(start)
    }
  })
})

describe('list products', () => {
  let tenant: TenantFixture
  const created: Record<string, ProductBody> = {}

  beforeAll(async () => {
    // A tenant of its own, so the list holds exactly these products.
    tenant = await ctx.createTenantFixture('Lists')
    const rows: [string, string, boolean][] = [
      ['Charlie', 'one_time', true],
      ['Alpha', 'recurring', true],
      ['Bravo', 'credit_top_up', true],
      ['Delta', 'recurring', false],
      ['Echo', 'one_time', false],
    ]
    for (const [name, type, active] of rows) {
      ctx.clock.advance(1000)
      created[name] = await newProduct(
        {
          name,
          type,
          active,
          prices: [
            type === 'recurring'
              ? { amount: '10', currency: 'usd', interval: 'month' }
              : { amount: '10', currency: 'usd' },
          ],
        },
        tenant.key,
      )
    }
  })

  const list = (query: string) =>
    ctx.get<List<ProductBody>>(`/v1/products${query}`, { key: tenant.key })
  const names = (res: { body: List<ProductBody> }) => res.body.items.map((p) => p.name)

  test('newest first by default, each item with its own prices', async () => {
    const res = await list('')
    expect(res.status).toBe(200)
    expect(names(res)).toEqual(['Echo', 'Delta', 'Bravo', 'Alpha', 'Charlie'])
    expect(res.body.pagination).toEqual({ total: 5, limit: 50, offset: 0 })
    for (const item of res.body.items) {
      expect(item).toEqual(created[item.name])
      expect(item.prices.every((p) => p.product_id === item.id)).toBe(true)
    }
  })

  test.each([
    ['?type=recurring', ['Delta', 'Alpha']],
    ['?type=one_time', ['Echo', 'Charlie']],
    ['?type=credit_top_up', ['Bravo']],
    ['?active=true', ['Bravo', 'Alpha', 'Charlie']],
    ['?active=false', ['Echo', 'Delta']],
    ['?type=recurring&active=true', ['Alpha']],
    ['?type=one_time&active=false', ['Echo']],
  ])('filter %s', async (query, expected) => {
    const res = await list(query)
    expect(res.status).toBe(200)
    expect(names(res)).toEqual(expected)
    expect(res.body.pagination.total).toBe(expected.length)
  })

  test('sort=name ascending, -name descending, created_at oldest first', async () => {
    const asc = await list('?sort=name')
    expect(asc.status).toBe(200)
    expect(names(asc)).toEqual(['Alpha', 'Bravo', 'Charlie', 'Delta', 'Echo'])
    const desc = await list('?sort=-name')
    expect(names(desc)).toEqual(['Echo', 'Delta', 'Charlie', 'Bravo', 'Alpha'])
    const oldest = await list('?sort=created_at')
    expect(names(oldest)).toEqual(['Charlie', 'Alpha', 'Bravo', 'Delta', 'Echo'])
  })

  test('limit/offset and size/page give the same pages', async () => {
    const first = await list('?limit=2')
    expect(names(first)).toEqual(['Echo', 'Delta'])
    expect(first.body.pagination).toEqual({ total: 5, limit: 2, offset: 0 })
    const second = await list('?limit=2&offset=2')
    expect(names(second)).toEqual(['Bravo', 'Alpha'])
    expect(second.body.pagination).toEqual({ total: 5, limit: 2, offset: 2 })
    const page1 = await list('?size=2&page=1')
    expect(page1.body).toEqual(second.body)
    const last = await list('?size=2&page=2')
    expect(names(last)).toEqual(['Charlie'])
    expect(last.body.pagination).toEqual({ total: 5, limit: 2, offset: 4 })
    const beyond = await list('?limit=2&offset=10')
    expect(beyond.body.items).toEqual([])
    expect(beyond.body.pagination.total).toBe(5)
  })

  test.each([
    ['?sort=price'],
    ['?type=lifetime'],
    ['?active=maybe'],
    ['?limit=0'],
    ['?limit=1001'],
    ['?offset=2&page=1'],
    ['?limit=2&size=3'],
  ])('%s is 400', async (query) => {
    const res = await ctx.get<ErrorBody>(`/v1/products${query}`, { key: tenant.key })
    expect(res.status).toBe(400)
    expect(res.body.error.code).toBe('validation_error')
  })
})

describe('product security', () => {
  test("another tenant's product is 404 on GET and PATCH, and is left unchanged", async () => {
    const foreign = await newProduct({ name: 'Foreign' }, other.key)
    const get = await ctx.get<ErrorBody>(`/v1/products/${foreign.id}`)
    expect(get.status).toBe(404)
    expect(get.body.error.code).toBe('not_found')
    const patch = await ctx.patch<ErrorBody>(`/v1/products/${foreign.id}`, {
      name: 'Hijacked',
      deactivate_prices: foreign.prices.map((p) => p.id),
    })
    expect(patch.status).toBe(404)
    expect(patch.body.error.code).toBe('not_found')
    const list = await ctx.get<List<ProductBody>>('/v1/products?limit=1000')
    expect(list.body.items.map((p) => p.id)).not.toContain(foreign.id)
    const own = await ctx.get<ProductBody>(`/v1/products/${foreign.id}`, { key: other.key })
    expect(own.body).toEqual(foreign)
  })

  test('the live environment does not see test products, and the reverse', async () => {
    const testProduct = await newProduct({ name: 'Test only' })
    const liveGet = await ctx.get<ErrorBody>(`/v1/products/${testProduct.id}`, {
      key: ctx.main.liveKey,
    })
    expect(liveGet.status).toBe(404)
    const livePatch = await ctx.patch<ErrorBody>(
      `/v1/products/${testProduct.id}`,
      { name: 'x' },
      { key: ctx.main.liveKey },
    )
    expect(livePatch.status).toBe(404)
    const liveList = await ctx.get<List<ProductBody>>('/v1/products?limit=1000', {
      key: ctx.main.liveKey,
    })
    expect(liveList.body.items.map((p) => p.id)).not.toContain(testProduct.id)
    const liveProduct = await newProduct({ name: 'Live only' }, ctx.main.liveKey)
    expect((await ctx.get(`/v1/products/${liveProduct.id}`)).status).toBe(404)
    const liveAgain = await ctx.get<List<ProductBody>>('/v1/products?limit=1000', {
      key: ctx.main.liveKey,
    })
    expect(liveAgain.body.items.map((p) => p.id)).toEqual([liveProduct.id])
  })

  test('a customer token is 403 forbidden on every product route', async () => {
    const product = await newProduct()
    const customer = await ctx.post<{ id: string }>('/v1/customers', {
      name: 'Ada',
      email: 'ada@example.com',
    })
    expect(customer.status).toBe(201)
    const token = await ctx.post<{ token: string }>(`/v1/customers/${customer.body.id}/tokens`)
    expect(token.status).toBe(201)
    const key = token.body.token
    for (const res of [
      await ctx.get<ErrorBody>('/v1/products', { key }),
      await ctx.get<ErrorBody>(`/v1/products/${product.id}`, { key }),
      await ctx.post<ErrorBody>(
        '/v1/products',
        { name: 'x', type: 'one_time', prices: [{ amount: '1', currency: 'usd' }] },
        { key },
      ),
      await ctx.patch<ErrorBody>(`/v1/products/${product.id}`, { name: 'x' }, { key }),
    ]) {
      expect(res.status).toBe(403)
      expect(res.body.error.code).toBe('forbidden')
    }
    expect((await ctx.get<ProductBody>(`/v1/products/${product.id}`)).body.name).toBe(product.name)
  })

  test.each([
    ['GET', '/v1/products'],
    ['GET', '/v1/products/prod_x'],
    ['POST', '/v1/products'],
    ['PATCH', '/v1/products/prod_x'],
  ] as const)('%s %s without a key is 401 unauthorized', async (method, path) => {
    const res = await ctx.request<ErrorBody>(
      method,
      path,
      method === 'GET' ? undefined : { name: 'x' },
      { key: null },
    )
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })

  test('an unknown key is 401', async () => {
    const res = await ctx.get<ErrorBody>('/v1/products', { key: 'sk_test_notarealkey' })
    expect(res.status).toBe(401)
    expect(res.body.error.code).toBe('unauthorized')
  })

  test('the /api/v1 base path serves the same products', async () => {
    const product = await newProduct({ name: 'Flexprice path' })
    const res = await ctx.get<ProductBody>(`/api/v1/products/${product.id}`)
    expect(res.status).toBe(200)
    expect(res.body).toEqual(product)
  })
})
