import { randomBytes } from 'node:crypto'
import { afterAll, describe, expect, inject, test } from 'vitest'
import { createDbClient, type DbClient } from '../../src/db/client.ts'
import { migrateToLatest } from '../../src/db/migrate.ts'
import { bootstrapDefaultTenant, DEFAULT_TENANT_ID } from '../../src/modules/tenants/service.ts'
import { createEmptyDatabase, testDatabasePrefix } from '../test-database.ts'

const clients: DbClient[] = []
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close()))
})

describe('migrations', () => {
  test('three processes migrating and bootstrapping an empty database at once: one wins, all succeed', async () => {
    const name = `${testDatabasePrefix(inject('runId'))}mig${randomBytes(3).toString('hex')}`
    const url = await createEmptyDatabase(inject('serverUrl'), name)
    const racers = [0, 1, 2].map(() => createDbClient(url, { max: 3 }))
    clients.push(...racers)

    const results = await Promise.all(
      racers.map((client) =>
        migrateToLatest(client.db, url, { afterMigrate: () => bootstrapDefaultTenant(client.db) }),
      ),
    )

    expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1)
    const bootstrapped = results.filter((r) => r.after !== undefined)
    expect(bootstrapped).toHaveLength(1)
    expect(bootstrapped[0]?.after?.key.key).toMatch(/^sk_test_/)

    const db = racers[0]!.db
    const tenants = await db.selectFrom('tenants').selectAll().execute()
    expect(tenants.map((t) => t.id)).toEqual([DEFAULT_TENANT_ID])
    const environments = await db
      .selectFrom('environments')
      .select('type')
      .orderBy('type')
      .execute()
    expect(environments.map((e) => e.type)).toEqual(['live', 'test'])
    expect(await db.selectFrom('api_keys').selectAll().execute()).toHaveLength(1)

    // graphile-worker's schema is there too.
    const { rows } = await racers[0]!.pool.query(
      "select 1 from information_schema.schemata where schema_name = 'graphile_worker'",
    )
    expect(rows).toHaveLength(1)

    // Running again is a no-op.
    const again = await migrateToLatest(db, url, { afterMigrate: () => bootstrapDefaultTenant(db) })
    expect(again.applied).toEqual([])
    expect(again.after).toBeUndefined()
  })
})
