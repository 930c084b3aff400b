import { createHash } from 'node:crypto'
import type { FastifyInstance, FastifyReply, FastifyRequest } from 'fastify'
import type { Clock } from '../core/clock.ts'
import { AppError, validationError } from '../core/errors.ts'
import type { SecretBox } from '../core/secret-box.ts'
import type { Db } from '../db/client.ts'
import type { IdempotencyRecord } from '../db/database.ts'
import { CommitMark } from '../db/transaction.ts'
import { failedTransiently } from './error-handler.ts'
import {
  type ClaimOf,
  completeClaim,
  findRecord,
  insertClaim,
  releaseUnapplied,
  takeStaleClaim,
} from './idempotency-records.ts'

declare module 'fastify' {
  interface FastifyRequest {
    /** Set while this request holds an idempotency key, so its response is stored. */
    idempotency: HeldKey | null
  }
}

/**
 * A key this request holds: its claim's `locked_at` (a fence: a retry that takes the key
 * over sets another), and the mark its work's first commit carries.
 */
interface HeldKey extends ClaimOf {
  mark: CommitMark
}

export const IDEMPOTENCY_TTL_MS = 24 * 60 * 60 * 1000
/**
 * A key held longer than this by a request none of whose work has committed (its process
 * died, or it is slow) can be taken over by a retry; the first then cannot commit.
 */
export const IDEMPOTENCY_LOCK_TIMEOUT_MS = 60 * 1000
const MAX_KEY_LENGTH = 255

interface IdempotencyDeps {
  db: Db
  clock: Clock
  secretBox: SecretBox
}

/**
 * `Idempotency-Key` on every POST, as Stripe does it: the first response is stored
 * (encrypted) for 24 h and replayed for the same key and body; another body under
 * the same key is 422 `idempotency_mismatch`; a request while the first is still
 * running is 409 `idempotency_conflict`. Records live in PostgreSQL, so the rules
 * hold across processes.
 *
 * The first transaction of the request's work to commit marks the record applied in
 * that same commit (a `CommitMark`). So a record is never released, nor taken over
 * after the lock timeout, once the work has committed, even when the response was never
 * stored (its process stopped in between). And the mark is fenced by the claim's
 * `locked_at`: a request that runs past the lock timeout, and whose key a retry took
 * over, cannot commit its work (nor release or complete the retry's record). So the
 * work commits at most once per key. A 5xx is not stored when nothing committed (a
 * retry runs again), and is stored when something did.
 */
export function registerIdempotency(app: FastifyInstance, deps: IdempotencyDeps): void {
  app.decorateRequest('idempotency', null)

  app.addHook('preHandler', async (request, reply) => {
    if (request.method !== 'POST' || !request.principal) return
    const key = idempotencyKeyOf(request)
    if (key === undefined) return
    const { environmentId, customerId } = request.principal
    // A customer token's keys are its own: another customer sending the same key and
    // request gets a mismatch, never the first one's stored response.
    const requestHash = hashRequest(request, customerId === null ? '' : `customer ${customerId}`)
    const stored =
      customerId === null
        ? key
        : await customerKey(deps, { environmentId, customerId, key, requestHash })
    const claim = await claimKey(deps, {
      environmentId,
      key: stored,
      shownKey: key,
      method: request.method,
      path: request.url,
      requestHash,
      showOriginal: customerId === null,
    })
    if (!(claim instanceof Date)) return sendReplay(reply, claim, deps.secretBox)
    const lockedAt = claim
    const mark = new CommitMark(
      'idempotency_keys',
      { environment_id: environmentId, key: stored, state: 'in_flight', locked_at: lockedAt },
      () => ({ applied_at: deps.clock.now() }),
      () =>
        new AppError(
          'idempotency_conflict',
          'A retry took this Idempotency-Key over after the lock timeout while this request ran; its work was rolled back, and the retry stands',
          { idempotency_key: key },
        ),
    )
    request.idempotency = { environmentId, key: stored, lockedAt, mark }
  })

  // The rest of a keyed request (its handler, and all it starts) runs in its mark's scope,
  // so the transactions of its work carry the mark. Callback-style: the handler runs
  // inside `done`.
  app.addHook('preHandler', (request, _reply, done) => {
    const held = request.idempotency
    if (held) held.mark.enter(done)
    else done()
  })

  app.addHook('onSend', async (request, reply, payload) => {
    const held = request.idempotency
    if (!held) return payload
    request.idempotency = null
    held.mark.end()
    // A 5xx, or a 409 "retry it" (a deadlock or a lost serialization race), before any of the
    // work committed: no record, so a retry runs again. Kept, the refusal was replayed to
    // every retry for the key's 24 hours, though the message says to retry.
    if (
      (reply.statusCode >= 500 || failedTransiently(request)) &&
      (await releaseUnapplied(deps.db, held))
    )
      return payload
    const body = typeof payload === 'string' ? payload : payload == null ? '' : undefined
    // A stream or a buffer (no route of Payrail's sends one): nothing to replay. Released if
    // nothing committed; else the record stays in flight, applied, until it expires.
    if (body === undefined) {
      await releaseUnapplied(deps.db, held)
      return payload
    }
    try {
      // Stores nothing if a retry took the key over (this request's work then rolled back).
      await completeClaim(deps.db, held, {
        status: reply.statusCode,
        body: deps.secretBox.seal(body),
        contentType: String(reply.getHeader('content-type') ?? 'application/json; charset=utf-8'),
      })
    } catch (error) {
      // The work is done and committed: its answer still goes out, rather than a 500 that
      // would invite a retry. The key stays in flight, marked applied if a transaction of
      // the work committed (a retry is then a 409, not a second run); the failure is logged.
      request.log.error(
        { err: error, idempotency_key: held.key },
        'the response of a keyed request could not be stored for replay',
      )
    }
    return payload
  })
}

interface ClaimInput {
  environmentId: string
  /** The key as stored (a customer's in its own namespace). */
  key: string
  /** The key as the caller sent it, for error details. */
  shownKey: string
  method: string
  path: string
  requestHash: string
  /** A mismatch names the original request (merchant keys only: a customer may not learn another's). */
  showOriginal: boolean
}

/**
 * Takes the key for this request, returning the claim's `locked_at`, or returns the
 * stored record to replay; throws on mismatch or conflict.
 */
async function claimKey(
  deps: IdempotencyDeps,
  input: ClaimInput,
): Promise<Date | IdempotencyRecord> {
  const now = deps.clock.now()
  const claimed = await insertClaim(deps.db, {
    ...input,
    now,
    expiresAt: new Date(now.getTime() + IDEMPOTENCY_TTL_MS),
  })
  if (claimed) return now

  const existing = await findRecord(deps.db, input)
  // Pruned between the two statements: try once more from the start.
  if (!existing) return claimKey(deps, input)

  if (existing.request_hash !== input.requestHash) {
    throw new AppError(
      'idempotency_mismatch',
      'This Idempotency-Key was used with a different request; use a new key for a new request',
      {
        idempotency_key: input.shownKey,
        ...(input.showOriginal && {
          original_path: existing.path,
          original_method: existing.method,
        }),
      },
    )
  }
  if (existing.state === 'completed') return existing

  const stale = existing.locked_at.getTime() <= now.getTime() - IDEMPOTENCY_LOCK_TIMEOUT_MS
  if (stale && existing.applied_at !== null) {
    // Its work committed, and its holder has not answered in the lock timeout: most likely
    // stopped (a live one still stores its response, and a later retry replays it).
    throw new AppError(
      'idempotency_conflict',
      'The request with this Idempotency-Key was applied, but no response has been stored for it within the lock timeout (its server may have stopped before answering); it will not run again. Look its result up instead of retrying',
      { idempotency_key: input.shownKey, applied_at: existing.applied_at.toISOString() },
    )
  }
  if (stale && (await takeStaleClaim(deps.db, input, existing.locked_at, now))) return now
  throw new AppError(
    'idempotency_conflict',
    'A request with this Idempotency-Key is still being processed; retry after it completes',
    { idempotency_key: input.shownKey },
  )
}

/**
 * Where a customer token's key is stored: in the customer's own namespace, so that no
 * customer's key can ever hold one of the merchant's or another customer's (a header value
 * cannot carry the newline that separates the namespace). A record this customer made
 * under the bare key before namespaces (this version) is still replayed under it, until it
 * expires: a lookup that can go once no such record can be alive. An expired one is as good
 * as none: the customer's new use of the key goes to its own namespace, never back to the
 * bare key, which is the merchant's.
 */
async function customerKey(
  deps: Pick<IdempotencyDeps, 'db' | 'clock'>,
  sent: { environmentId: string; customerId: string; key: string; requestHash: string },
): Promise<string> {
  const { environmentId, customerId, key, requestHash } = sent
  const legacy = await findRecord(deps.db, { environmentId, key })
  if (
    legacy?.request_hash === requestHash &&
    legacy.expires_at.getTime() > deps.clock.now().getTime()
  )
    return key
  return `customer\n${customerId}\n${key}`
}

function sendReplay(reply: FastifyReply, record: IdempotencyRecord, secretBox: SecretBox) {
  const body = record.response_body === null ? '' : secretBox.open(record.response_body)
  return reply
    .code(record.response_status ?? 200)
    .header('content-type', record.response_content_type ?? 'application/json; charset=utf-8')
    .header('idempotent-replayed', 'true')
    .send(body)
}

function idempotencyKeyOf(request: FastifyRequest): string | undefined {
  const header = request.headers['idempotency-key']
  const value = (Array.isArray(header) ? header[0] : header)?.trim()
  if (!value) return undefined
  if (value.length > MAX_KEY_LENGTH) {
    throw validationError(`Idempotency-Key must be at most ${MAX_KEY_LENGTH} characters`, {
      length: value.length,
    })
  }
  return value
}

/** Same method, path and body (key order ignored) give the same hash. */
export function hashRequest(
  request: Pick<FastifyRequest, 'method' | 'url' | 'body'>,
  caller = '',
): string {
  // No caller (a merchant key): the hash is as it always was, so stored records still replay.
  return createHash('sha256')
    .update(caller ? `${caller}\n` : '')
    .update(`${request.method} ${request.url}\n`)
    .update(canonicalJson(request.body ?? null))
    .digest('hex')
}

export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`
  if (value !== null && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`
  }
  return JSON.stringify(value) ?? 'null'
}
