import { newId } from '../../core/ids.ts'
import type { Db } from '../../db/client.ts'
import { ENVIRONMENT_TYPES, type Environment, type Tenant } from '../../db/database.ts'
import { inTransaction } from '../../db/transaction.ts'
import { type CreatedApiKey, createApiKey } from '../api-keys/service.ts'
import {
  countTenants,
  findEnvironmentByType,
  findTenant,
  insertEnvironments,
  insertTenantIfAbsent,
} from './repository.ts'

export const DEFAULT_TENANT_ID = 'default'

export interface TenantWithEnvironments {
  tenant: Tenant
  environments: Environment[]
}

/**
 * Creates a tenant with its `test` and `live` environments.
 *
 * @example
 * const { tenant, environments } = await createTenant(db, { name: 'Acme' })
 */
export async function createTenant(
  db: Db,
  input: { name: string; id?: string },
): Promise<TenantWithEnvironments> {
  const created = await inTransaction(db, (trx) => insertTenantWithEnvironments(trx, input))
  if (!created) throw new Error(`Tenant '${input.id}' already exists`)
  return created
}

async function insertTenantWithEnvironments(
  db: Db,
  input: { name: string; id?: string },
): Promise<TenantWithEnvironments | undefined> {
  const tenant = await insertTenantIfAbsent(db, {
    id: input.id ?? newId('tenant'),
    name: input.name,
  })
  if (!tenant) return undefined
  const environments = await insertEnvironments(
    db,
    ENVIRONMENT_TYPES.map((type) => ({
      id: newId('environment'),
      tenant_id: tenant.id,
      type,
      name: type === 'test' ? 'Test' : 'Live',
    })),
  )
  return { tenant, environments }
}

/**
 * On an empty database, creates tenant `default` with its environments and one
 * admin key for `test`, returned so the caller can show it once. Returns
 * `undefined` when any tenant already exists; safe when two processes race.
 */
export async function bootstrapDefaultTenant(
  db: Db,
): Promise<(TenantWithEnvironments & { key: CreatedApiKey }) | undefined> {
  if ((await countTenants(db)) > 0) return undefined
  return inTransaction(db, async (trx) => {
    const created = await insertTenantWithEnvironments(trx, {
      id: DEFAULT_TENANT_ID,
      name: 'Default',
    })
    if (!created) return undefined
    const test = created.environments.find((e) => e.type === 'test')
    if (!test) throw new Error('Bootstrap created no test environment')
    const key = await createApiKey(trx, {
      tenantId: created.tenant.id,
      environmentId: test.id,
      role: 'admin',
      name: 'Bootstrap key',
    })
    return { ...created, key }
  })
}

export async function requireTenant(db: Db, id: string): Promise<Tenant> {
  const tenant = await findTenant(db, id)
  if (!tenant) throw new Error(`No tenant '${id}'`)
  return tenant
}

export async function requireEnvironment(
  db: Db,
  tenantId: string,
  type: (typeof ENVIRONMENT_TYPES)[number],
): Promise<Environment> {
  const environment = await findEnvironmentByType(db, tenantId, type)
  if (!environment) throw new Error(`Tenant '${tenantId}' has no '${type}' environment`)
  return environment
}
