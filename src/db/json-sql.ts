import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type RawBuilder,
  sql,
} from 'kysely'
import { THREE_DECIMAL_CURRENCIES, ZERO_DECIMAL_CURRENCIES } from '../core/money.ts'

/**
 * SQL that writes API values as the response serializers do, for responses that
 * PostgreSQL builds as JSON text (a list page) instead of Node. Each helper matches
 * one TypeScript formatter, and the tests compare the two on the same rows.
 */

/** `formatMinorUnits(amount, currency)`: `"12.50"`, `"500"` (jpy), `"1.250"` (kwd). */
export function minorUnitsText(amount: RawBuilder<unknown>, currency: RawBuilder<unknown>) {
  const decimals = (digits: number) => {
    const unit = sql.lit(10 ** digits)
    return sql`(abs(${amount}) / ${unit})::text || '.' || lpad((abs(${amount}) % ${unit})::text, ${sql.lit(digits)}, '0')`
  }
  const inList = (codes: ReadonlySet<string>) => sql.join([...codes].map((code) => sql.lit(code)))
  return sql`(case when ${amount} < 0 then '-' else '' end || case
    when ${currency} in (${inList(ZERO_DECIMAL_CURRENCIES)}) then abs(${amount})::text
    when ${currency} in (${inList(THREE_DECIMAL_CURRENCIES)}) then ${decimals(3)}
    else ${decimals(2)} end)`
}

/** `date.toISOString()`: UTC, milliseconds (truncated, as a `Date` holds them), `Z`. */
export function isoTimestamp(column: RawBuilder<unknown>) {
  return sql`to_char(${column} at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')`
}

/** `map[value]` for a fixed map, as a `case` expression (null when absent). */
export function lookup(value: RawBuilder<unknown>, map: Readonly<Record<string, string>>) {
  const arms = Object.entries(map).map(
    ([key, out]) => sql`when ${sql.lit(key)} then ${sql.lit(out)}`,
  )
  return sql`(case ${value} ${sql.join(arms, sql` `)} end)`
}

/** PostgreSQL's limit on a function's arguments, two per field of `json_build_object`. */
const MAX_FIELDS = 50

/** `json_build_object` over `[key, expression]` pairs, in order. */
export function jsonObject(fields: [string, RawBuilder<unknown>][]) {
  if (fields.length > MAX_FIELDS) {
    throw new Error(`json_build_object takes at most ${MAX_FIELDS} fields, got ${fields.length}`)
  }
  return sql`json_build_object(${sql.join(fields.map(([key, value]) => sql`${sql.lit(key)}, ${value}`))})`
}

/** Compiles SQL without a database, for `compiledOnce`. */
const compiler = new Kysely<unknown>({
  dialect: {
    createAdapter: () => new PostgresAdapter(),
    createDriver: () => new DummyDriver(),
    createIntrospector: (db) => new PostgresIntrospector(db),
    createQueryCompiler: () => new PostgresQueryCompiler(),
  },
})

/**
 * An expression without parameters (literals and references only), compiled to SQL
 * text once and reused as `sql.raw`, so a request does not rebuild and recompile a
 * large constant expression such as a JSON object of fifty fields.
 */
export function compiledOnce(build: () => RawBuilder<unknown>): () => RawBuilder<unknown> {
  let text: string | undefined
  return () => {
    if (text === undefined) {
      const compiled = build().compile(compiler)
      if (compiled.parameters.length > 0)
        throw new Error('compiledOnce: the expression has parameters')
      text = compiled.sql
    }
    return sql.raw(text)
  }
}
