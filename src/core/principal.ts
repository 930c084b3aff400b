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
