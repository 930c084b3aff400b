import type { EnvironmentType, Role } from '../db/database.ts'

/** The tenant environment every query is scoped to. */
export interface Scope {
  tenantId: string
  environmentId: string
}

/** Who is calling: an API key (role `admin`) or a customer token (role `user`, bound to one customer). */
export interface Principal extends Scope {
  environmentType: EnvironmentType
  role: Role
  keyId: string
  customerId: string | null
}

/**
 * What a caller may see: an admin sees the whole environment (`customerId` null);
 * a customer token sees only its own customer's objects.
 */
export interface Access extends Scope {
  customerId: string | null
}

export function accessOf(principal: Principal): Access {
  return {
    tenantId: principal.tenantId,
    environmentId: principal.environmentId,
    customerId: principal.customerId,
  }
}

/** Full access to an environment, for admin callers, jobs and the CLI. */
export function adminAccess(scope: Scope): Access {
  return { tenantId: scope.tenantId, environmentId: scope.environmentId, customerId: null }
}

/** The environment an access reaches, without whose customer it is. */
export function scopeOf(access: Access): Scope {
  return { tenantId: access.tenantId, environmentId: access.environmentId }
}
