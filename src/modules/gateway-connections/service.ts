import type { Clock } from '../../core/clock.ts'
import { AppError, notFound, validationError } from '../../core/errors.ts'
import { newId } from '../../core/ids.ts'
import type { Scope } from '../../core/principal.ts'
import type { SecretBox } from '../../core/secret-box.ts'
import type { Db } from '../../db/client.ts'
import type { GatewayConnection } from '../../db/database.ts'
import { isPgError, PG_UNIQUE_VIOLATION } from '../../db/errors.ts'
import { inTransaction } from '../../db/transaction.ts'
import { paymentsAwaitingGateway } from '../payments/repository.ts'
import {
  findActiveConnection,
  findConnection,
  insertConnection,
  listConnections,
  updateConnection,
} from './repository.ts'
import type { CreateConnectionBody, UpdateConnectionBody } from './schemas.ts'

/** Credentials each connectable gateway needs; anything else is refused so typos surface at once. */
export const REQUIRED_CREDENTIALS: Record<string, readonly string[]> = {
  stripe: ['secret_key', 'webhook_secret'],
  bitpay: ['token'],
  coinpayments: ['public_key', 'private_key', 'ipn_secret', 'merchant_id'],
  checkout: ['secret_key', 'signature_key'],
  external: ['webhook_secret'],
}

export interface OpenedConnection {
  connection: GatewayConnection
  credentials: Record<string, string>
}

interface ConnectionDeps {
  db: Db
  clock: Clock
  secretBox: SecretBox
}

/**
 * Connects a gateway to the environment; credentials are sealed before they are
 * stored and never returned. One active connection per gateway and environment.
 */
export async function createConnection(
  deps: ConnectionDeps,
  scope: Scope,
  body: CreateConnectionBody,
): Promise<OpenedConnection> {
  const required = credentialsOf(body.gateway)
  if (!required) {
    throw validationError(
      `gateway must be one of ${Object.keys(REQUIRED_CREDENTIALS).join(', ')}`,
      { field: 'gateway' },
    )
  }
  assertCredentials(body.gateway, body.credentials)
  assertSettings(body.gateway, body.settings ?? {})
  const now = deps.clock.now()
  try {
    // In a transaction (of `inTransaction`), so a keyed request's commit marks its key applied.
    const connection = await inTransaction(deps.db, (trx) =>
      insertConnection(trx, {
        id: newId('gatewayConnection'),
        tenant_id: scope.tenantId,
        environment_id: scope.environmentId,
        gateway: body.gateway,
        credentials: deps.secretBox.seal(JSON.stringify(body.credentials)),
        settings: JSON.stringify(body.settings ?? {}),
        created_at: now,
        updated_at: now,
      }),
    )
    return { connection, credentials: body.credentials }
  } catch (error) {
    if (isPgError(error, PG_UNIQUE_VIOLATION)) {
      throw new AppError(
        'conflict',
        `This environment already has an active ${body.gateway} connection; update or delete it`,
        {
          gateway: body.gateway,
        },
      )
    }
    throw error
  }
}

/**
 * Changes a connection under its row lock: two updates at once (one rotating `secret_key`,
 * the other `signature_key`) each merge into what the other wrote, where before the later
 * one wrote back the credentials it had read and the other's change was lost. Stored
 * credentials that cannot be opened (sealed under another `PAYRAIL_SECRET_KEY`) do not block
 * a deactivation, nor an update that sends every credential again.
 */
export async function updateGatewayConnection(
  deps: ConnectionDeps,
  scope: Scope,
  id: string,
  body: UpdateConnectionBody,
  options: { force?: boolean } = {},
): Promise<OpenedConnection> {
  return inTransaction(deps.db, async (trx) => {
    const current = await findConnection(trx, scope.environmentId, id, { lock: true })
    if (!current) throw notFound('gateway_connection', id)
    if (current.active && body.active === false && !options.force)
      await assertNothingAwaits(trx, scope, current.gateway)
    const stored = openableCredentials(deps.secretBox, current)
    const rewrite = body.credentials !== undefined || stored !== undefined
    const credentials = { ...stored, ...body.credentials }
    if (rewrite) assertCredentials(current.gateway, credentials, body.credentials ?? {})
    else if (body.active !== false || body.settings !== undefined) {
      throw validationError(
        `The stored ${current.gateway} credentials cannot be opened with this PAYRAIL_SECRET_KEY; send all of them again`,
        { field: 'credentials', missing: credentialsOf(current.gateway) ?? [] },
      )
    }
    if (body.settings !== undefined)
      assertSettings(current.gateway, { ...current.settings, ...body.settings })
    try {
      const connection = await updateConnection(trx, scope.environmentId, id, {
        ...(rewrite && { credentials: deps.secretBox.seal(JSON.stringify(credentials)) }),
        ...(body.settings !== undefined && {
          settings: JSON.stringify({ ...current.settings, ...body.settings }),
        }),
        ...(body.active !== undefined && { active: body.active }),
        updated_at: deps.clock.now(),
      })
      if (!connection) throw notFound('gateway_connection', id)
      return { connection, credentials }
    } catch (error) {
      if (isPgError(error, PG_UNIQUE_VIOLATION)) {
        throw new AppError('conflict', `Another ${current.gateway} connection is already active`, {
          gateway: current.gateway,
        })
      }
      throw error
    }
  })
}

/**
 * A connection is the only way the provider's reports of its payments are read (their
 * webhooks are verified with its secrets) and the only way they can be cancelled or
 * refunded: deactivated while a payment through it is open, the money the customer then
 * paid would be reported to a 404 and recorded nowhere. So it is refused (409) while any is
 * (`paymentsAwaitingGateway`: `PENDING`, `PROCESSING`, `RESERVED`, `CAPTURED`,
 * `PENDING_REFUND`; `INITIATED` with its start's answer lost, what it opened may exist; `FAILED`
 * in a way the provider may still turn into money). Replacing its credentials (PATCH) keeps
 * it active.
 */
async function assertNothingAwaits(db: Db, scope: Scope, gateway: string): Promise<void> {
  const open = await paymentsAwaitingGateway(db, scope.environmentId, gateway, 10)
  if (open.length === 0) return
  throw new AppError(
    'conflict',
    `The ${gateway} connection has payments it must still report on (${open.map((p) => `${p.id} ${p.payment_status}`).join(', ')}${open.length === 10 ? ', …' : ''}); settle or cancel them first, or DELETE with force=true to refuse their reports`,
    { gateway, payment_ids: open.map((p) => p.id) },
  )
}

/**
 * Deactivates the connection (kept for the history of payments that used it). `force`
 * deactivates it with payments still open through it (a page its provider cannot withdraw
 * and that nobody will pay, an external system retired): their reports are refused from
 * then on, as the merchant chose.
 */
export async function deleteGatewayConnection(
  deps: ConnectionDeps,
  scope: Scope,
  id: string,
  options: { force?: boolean } = {},
): Promise<OpenedConnection> {
  return updateGatewayConnection(deps, scope, id, { active: false }, options)
}

export async function listGatewayConnections(
  deps: ConnectionDeps,
  scope: Scope,
): Promise<OpenedConnection[]> {
  const rows = await listConnections(deps.db, scope.environmentId)
  // One connection whose credentials cannot be opened shows none set; it was a 500 for all.
  return rows.map((connection) => ({
    connection,
    credentials: openableCredentials(deps.secretBox, connection) ?? {},
  }))
}

/** The environment's active connection for a gateway, credentials opened; `undefined` when not connected. */
export async function activeConnection(
  deps: Pick<ConnectionDeps, 'db' | 'secretBox'>,
  scope: Scope,
  gateway: string,
): Promise<OpenedConnection | undefined> {
  const connection = await findActiveConnection(deps.db, scope.environmentId, gateway)
  return connection
    ? { connection, credentials: openCredentials(deps.secretBox, connection) }
    : undefined
}

/** The connection's credentials, or `undefined` when they cannot be opened with this key. */
function openableCredentials(
  secretBox: SecretBox,
  connection: GatewayConnection,
): Record<string, string> | undefined {
  try {
    return openCredentials(secretBox, connection)
  } catch {
    return undefined
  }
}

function openCredentials(
  secretBox: SecretBox,
  connection: GatewayConnection,
): Record<string, string> {
  const parsed: unknown = JSON.parse(secretBox.open(connection.credentials))
  const out: Record<string, string> = {}
  if (parsed && typeof parsed === 'object') {
    for (const [key, value] of Object.entries(parsed))
      if (typeof value === 'string') out[key] = value
  }
  return out
}

/**
 * The credentials `gateway` takes; `undefined` for a name that is no gateway, including
 * the names every object inherits (`__proto__`, `constructor`, `toString`).
 */
function credentialsOf(gateway: string): readonly string[] | undefined {
  return Object.hasOwn(REQUIRED_CREDENTIALS, gateway) ? REQUIRED_CREDENTIALS[gateway] : undefined
}

/**
 * `base_url` must be an http(s) URL that parses: the schema's `format: uri` passes some that
 * do not (`http://h:99999`, `http://999.1.1.1`), which were a 500 here for Stripe and, for the
 * other gateways, stored to fail every call to the provider as a retryable 502. Stripe's SDK
 * takes an API base as host, port and protocol only: a `base_url` with a path (a proxy under
 * `/stripe`) would be called without it, so it is refused (400). The other gateways' clients
 * take the whole URL.
 */
function assertSettings(gateway: string, settings: Record<string, string>): void {
  const base = settings.base_url
  if (base === undefined) return
  const url = URL.canParse(base) ? new URL(base) : undefined
  if (url?.protocol !== 'http:' && url?.protocol !== 'https:') {
    throw validationError('settings.base_url must be an http or https URL', {
      field: 'settings.base_url',
    })
  }
  if (gateway === 'stripe' && url.pathname !== '/') {
    throw validationError(
      "stripe's base_url takes no path: Stripe's SDK calls only its host, port and protocol",
      { field: 'settings.base_url' },
    )
  }
}

/**
 * `given` (the request's credentials) names only keys the gateway reads, and the
 * connection's credentials (`credentials`, after an update merged them) hold every one it
 * needs: a misspelt `webhook_secet` would be stored, and every webhook refused later.
 */
function assertCredentials(
  gateway: string,
  credentials: Record<string, string>,
  given: Record<string, string> = credentials,
): void {
  const required = credentialsOf(gateway) ?? []
  const unknown = Object.keys(given).filter((key) => !required.includes(key))
  if (unknown.length > 0) {
    throw validationError(
      `${gateway} takes credentials ${required.join(', ')}; unknown: ${unknown.join(', ')}`,
      { field: 'credentials', unknown },
    )
  }
  const missing = required.filter((key) => !credentials[key])
  if (missing.length > 0) {
    throw validationError(`${gateway} needs credentials ${missing.join(', ')}`, {
      field: 'credentials',
      missing,
    })
  }
}
