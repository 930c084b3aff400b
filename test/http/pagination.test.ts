import { afterAll, beforeAll, describe, expect, test } from 'vitest'
import { pageFrom } from '../../src/http/pagination.ts'
import { createApiKey } from '../../src/modules/api-keys/service.ts'
import { createTestContext, type ErrorBody, type TestContext } from '../harness.ts'

interface KeyList {
  items: { id: string }[]
  pagination: { total: number; limit: number; offset: number }
}

let ctx: TestContext
let all: string[]

beforeAll(async () => {
  ctx = await createTestContext()
  for (let i = 0; i < 11; i++) {
    ctx.clock.advance(1000)
    await createApiKey(ctx.db, {
      tenantId: ctx.main.tenant.id,
      environmentId: ctx.main.test.id,
      role: 'admin',
      name: `k${i}`,
    })
  }
  const res = await ctx.get<KeyList>('/v1/api_keys?limit=1000')
  all = res.body.items.map((k) => k.id)
})
afterAll(() => ctx.close())

describe('pageFrom', () => {
  test.each([
    [{}, { limit: 50, offset: 0 }],
    [{ limit: 10 }, { limit: 10, offset: 0 }],
    [
      { limit: 10, offset: 30 },
      { limit: 10, offset: 30 },
    ],
    [
      { size: 20, page: 2 },
      { limit: 20, offset: 40 },
    ],
    [{ size: 20 }, { limit: 20, offset: 0 }],
    [{ page: 1 }, { limit: 50, offset: 50 }],
    [
      { limit: 5, size: 5, page: 3 },
      { limit: 5, offset: 15 },
    ],
  ])('%j → %j', (query, page) => {
    expect(pageFrom(query)).toEqual(page)
  })

  test.each([[{ offset: 1, page: 1 }], [{ limit: 5, size: 6 }]])('%j is refused', (query) => {
    expect(() => pageFrom(query)).toThrow()
  })
})

describe('list responses', () => {
  test('the documented shape with total, limit and offset', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys')
    expect(res.status).toBe(200)
    expect(Object.keys(res.body)).toEqual(['items', 'pagination'])
    expect(res.body.pagination).toEqual({ total: 12, limit: 50, offset: 0 })
    expect(res.body.items).toHaveLength(12)
  })

  test('limit and offset walk the list without overlap', async () => {
    const first = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=0')
    const second = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=5')
    const third = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=10')
    expect(
      [...first.body.items, ...second.body.items, ...third.body.items].map((k) => k.id),
    ).toEqual(all)
    expect(third.body.items).toHaveLength(2)
    expect(third.body.pagination).toEqual({ total: 12, limit: 5, offset: 10 })
  })

  test('size and page give the same pages', async () => {
    const byPage = await ctx.get<KeyList>('/v1/api_keys?size=5&page=1')
    const byOffset = await ctx.get<KeyList>('/v1/api_keys?limit=5&offset=5')
    expect(byPage.body).toEqual(byOffset.body)
  })

  test('newest first', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys?limit=2')
    expect(res.body.items.map((k) => k.id)).toEqual(all.slice(0, 2))
    expect(all[0]! > all[1]!).toBe(true)
  })

  test('past the end is an empty page, not an error', async () => {
    const res = await ctx.get<KeyList>('/v1/api_keys?offset=500')
    expect(res.status).toBe(200)
    expect(res.body.items).toEqual([])
    expect(res.body.pagination.total).toBe(12)
  })

  test.each([
    'limit=0',
    'limit=1001',
    'offset=-1',
    'page=-1',
    'size=0',
    'limit=abc',
    'offset=1&page=1',
    'offset=1000000001',
    'page=1e307',
    'size=1000&page=1000001',
  ])('%s is 400', async (query) => {
    // A list the database pages, and lists paged in memory (a few rows held in full).
    for (const path of ['/v1/api_keys', '/v1/gateway_connections']) {
      const res = await ctx.get<ErrorBody>(`${path}?${query}`)
      expect(res.status, `${path}?${query}: ${res.text}`).toBe(400)
      expect(res.body.error.code).toBe('validation_error')
    }
  })
})
