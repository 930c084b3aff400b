import { type Clock, systemClock } from '../../core/clock.ts'
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
  listEnvironments,
  lockTenant,
  tenantNeverKeyed,
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
 * admin key for `test`, returned so the caller can show it once. Tenant `default`
 * made by another command (`payrail demo`, `sync stripe`: they create it without a
 * key) that never had an admin key gets that key here too, or the operator would
 * have none: one it had, even revoked, means it has its keys, and none is made.
 * Returns `undefined` when nothing was to be made (any other tenant, and no
 * `default`, means the operator manages tenants); safe when processes race.
 */
export async function bootstrapDefaultTenant(
  db: Db,
  clock: Clock = systemClock,
): Promise<(TenantWithEnvironments & { key: CreatedApiKey }) | undefined> {
  const empty = (await countTenants(db)) === 0
  if (!empty && !(await tenantNeverKeyed(db, DEFAULT_TENANT_ID))) return undefined
  return inTransaction(db, async (trx) => {
    const created = empty
      ? await insertTenantWithEnvironments(trx, { id: DEFAULT_TENANT_ID, name: 'Default' })
      : undefined
    const found = created ?? (await keylessDefaultTenant(trx))
    if (!found) return undefined
    const test = found.environments.find((e) => e.type === 'test')
    if (!test) throw new Error('Bootstrap found no test environment')
    const key = await createApiKey(
      trx,
      {
        tenantId: found.tenant.id,
        environmentId: test.id,
        role: 'admin',
        name: 'Bootstrap key',
      },
      clock,
    )
    return { ...found, key }
  })
}

/**
 * Tenant `default` with its environments, locked until commit, when it never had an
 * admin key. Under the lock, a process that bootstrapped it first is seen (its key
 * committed), and no second key is made.
 */
async function keylessDefaultTenant(db: Db): Promise<TenantWithEnvironments | undefined> {
  const tenant = await lockTenant(db, DEFAULT_TENANT_ID)
  if (!tenant || !(await tenantNeverKeyed(db, tenant.id))) return undefined
  return { tenant, environments: await listEnvironments(db, tenant.id) }
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
