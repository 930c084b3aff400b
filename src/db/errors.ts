/** PostgreSQL error codes Payrail reacts to. */
export const PG_UNIQUE_VIOLATION = '23505'
export const PG_CHECK_VIOLATION = '23514'
export const PG_FOREIGN_KEY_VIOLATION = '23503'
export const PG_SERIALIZATION_FAILURE = '40001'
export const PG_DEADLOCK_DETECTED = '40P01'
/** A value past one of PostgreSQL's limits (an index entry larger than a third of a page). */
export const PG_PROGRAM_LIMIT_EXCEEDED = '54000'

export function isPgError(
  error: unknown,
  code: string,
): error is Error & { code: string; constraint?: string } {
  return error instanceof Error && (error as { code?: unknown }).code === code
}

/** The SQLSTATE of an error raised by PostgreSQL (pg's DatabaseError), if it is one. */
export function pgErrorCode(error: unknown): string | undefined {
  if (!(error instanceof Error) || error.constructor.name !== 'DatabaseError') return undefined
  const code = (error as { code?: unknown }).code
  return typeof code === 'string' && /^[0-9A-Z]{5}$/.test(code) ? code : undefined
}
