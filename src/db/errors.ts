/** PostgreSQL error codes Payrail reacts to. */
export const PG_UNIQUE_VIOLATION = '23505'
export const PG_CHECK_VIOLATION = '23514'
export const PG_FOREIGN_KEY_VIOLATION = '23503'

export function isPgError(
  error: unknown,
  code: string,
): error is Error & { code: string; constraint?: string } {
  return error instanceof Error && (error as { code?: unknown }).code === code
}
