import { BoundedCache } from '../../core/bounded-cache.ts'
import type { Db } from '../../db/client.ts'
import type { Environment, EnvironmentType, Tenant } from '../../db/database.ts'

export async function insertTenantIfAbsent(
  db: Db,
  tenant: { id: string; name: string },
): Promise<Tenant | undefined> {
  return db
    .insertInto('tenants')
    .values(tenant)
    .onConflict((oc) => oc.column('id').doNothing())
    .returningAll()
    .executeTakeFirst()
}

export async function insertEnvironments(
  db: Db,
  environments: { id: string; tenant_id: string; type: EnvironmentType; name: string }[],
): Promise<Environment[]> {
  return db.insertInto('environments').values(environments).returningAll().execute()
}

export async function findTenant(db: Db, id: string): Promise<Tenant | undefined> {
  return db.selectFrom('tenants').selectAll().where('id', '=', id).executeTakeFirst()
}

export async function findEnvironmentByType(
  db: Db,
  tenantId: string,
  type: EnvironmentType,
): Promise<Environment | undefined> {
  return db
    .selectFrom('environments')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .where('type', '=', type)
    .executeTakeFirst()
}

export async function listEnvironments(db: Db, tenantId: string): Promise<Environment[]> {
  return db
    .selectFrom('environments')
    .selectAll()
    .where('tenant_id', '=', tenantId)
    .orderBy('type', 'desc')
    .execute()
}

export async function countTenants(db: Db): Promise<number> {
  const row = await db
    .selectFrom('tenants')
    .select((eb) => eb.fn.countAll<bigint>().as('n'))
    .executeTakeFirstOrThrow()
  return Number(row.n)
}

export async function lockTenant(db: Db, id: string): Promise<Tenant | undefined> {
  return db.selectFrom('tenants').selectAll().where('id', '=', id).forUpdate().executeTakeFirst()
}

/**
 * Whether the tenant exists and never had an admin key (a revoked one is still a row), in
 * one statement.
 */
export async function tenantNeverKeyed(db: Db, id: string): Promise<boolean> {
  const row = await db
    .selectFrom('tenants')
    .select('id')
    .where('id', '=', id)
    .where(({ not, exists, selectFrom }) =>
      not(
        exists(
          selectFrom('api_keys')
            .select('id')
            .whereRef('api_keys.tenant_id', '=', 'tenants.id')
            .where('api_keys.role', '=', 'admin'),
        ),
      ),
    )
    .executeTakeFirst()
  return row !== undefined
}

/** Environments are never changed or deleted: one that was found stays found. */
const KNOWN_ENVIRONMENTS = new BoundedCache<string, Pick<Environment, 'id' | 'tenant_id' | 'type'>>(
  10_000,
)

/** An environment by id, read once per process. */
export async function findEnvironment(
  db: Db,
  environmentId: string,
): Promise<Pick<Environment, 'id' | 'tenant_id' | 'type'> | undefined> {
  const known = KNOWN_ENVIRONMENTS.get(environmentId)
  if (known) return known
  const found = await db
    .selectFrom('environments')
    .select(['id', 'tenant_id', 'type'])
    .where('id', '=', environmentId)
    .executeTakeFirst()
  if (found) KNOWN_ENVIRONMENTS.set(environmentId, found)
  return found
}
