import {
  DummyDriver,
  Kysely,
  PostgresAdapter,
  PostgresIntrospector,
  PostgresQueryCompiler,
  type RawBuilder,
  sql,
} from 'kysely'
import {
  FOUR_DECIMAL_CURRENCIES,
  THREE_DECIMAL_CURRENCIES,
  ZERO_DECIMAL_CURRENCIES,
} from '../core/money.ts'

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
    when ${currency} in (${inList(FOUR_DECIMAL_CURRENCIES)}) then ${decimals(4)}
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

/**
 * An expression whose value is already JSON text (an object or array built here), to
 * nest in `jsonObject` or `jsonArray` as it is; `null` when the expression is.
 */
export class JsonText {
  constructor(readonly json: RawBuilder<unknown>) {}
}

export function jsonText(json: RawBuilder<unknown>): JsonText {
  return new JsonText(json)
}

/**
 * A string that never needs JSON escaping, between quotes without `to_json`, which
 * looks its argument's type up in the catalogue for every value it writes (about a
 * quarter of PostgreSQL's time for a list page, `docs/performance.md`). Only for text
 * made without `"`, `\` or control characters by construction: Payrail's ids (TypeIDs),
 * codes that the state machine or a CHECK constraint keeps to a fixed set, and what
 * `minorUnitsText`, `isoTimestamp` and `lookup` write. Anything a client or a gateway
 * wrote goes through `to_json`.
 */
export function plainString(value: RawBuilder<unknown>): JsonText {
  return jsonText(sql`'"' || ${value} || '"'`)
}

/** A `boolean`, integer or `jsonb` value: its text is its JSON, as `to_json` would write it. */
export function jsonLiteral(value: RawBuilder<unknown>): JsonText {
  return jsonText(sql`(${value})::text`)
}

/**
 * A value of a `NOT NULL` column (or an expression of them only) for `jsonObject`, which
 * writes it without `coalesce` and puts its quotes in the literal pieces on either side:
 * `concat('{"id":"', id, '","tenant_id":"', …)`. A null here would be written as nothing.
 */
export class RequiredJson {
  constructor(
    readonly text: RawBuilder<unknown>,
    readonly quote: '' | '"',
  ) {}
}

/** A constant, as JSON text: part of the literal pieces around it. */
export class LiteralJson {
  constructor(readonly json: string) {}
}

/** `plainString` of a value that is never null. */
export function requiredString(value: RawBuilder<unknown>): RequiredJson {
  return new RequiredJson(value, '"')
}

/** `jsonLiteral` of a value that is never null. */
export function requiredLiteral(value: RawBuilder<unknown>): RequiredJson {
  return new RequiredJson(jsonLiteral(value).json, '')
}

/** PostgreSQL's limit on a function's arguments (`concat`'s too). */
const MAX_ARGUMENTS = 100

/**
 * A JSON object over `[key, value]` pairs, in order, as compact JSON text, as
 * `JSON.stringify` writes it. Each value is written by `to_json` (strings escaped, SQL
 * null as `null`), or as it is when it is `JsonText`. PostgreSQL builds it with one
 * `concat` of literal pieces and values, which costs less than `json_build_object` and
 * leaves out the spaces that writes around every colon.
 */
export function jsonObject(
  fields: [string, RawBuilder<unknown> | JsonText | RequiredJson | LiteralJson][],
): JsonText {
  // Literal text and values in order; literal text next to literal text is one piece.
  const parts: (string | RawBuilder<unknown>)[] = []
  const literal = (text: string) => {
    const last = parts.length - 1
    if (typeof parts[last] === 'string') parts[last] += text
    else parts.push(text)
  }
  fields.forEach(([key, value], index) => {
    literal(`${index === 0 ? '{' : ','}${JSON.stringify(key)}:`)
    if (value instanceof LiteralJson) literal(value.json)
    else if (value instanceof RequiredJson) {
      literal(value.quote)
      parts.push(value.text)
      literal(value.quote)
    } else parts.push(jsonValue(value))
  })
  literal(fields.length === 0 ? '{}' : '}')
  return jsonText(concatAll(parts.map((part) => (typeof part === 'string' ? sql.lit(part) : part))))
}

/**
 * A JSON array of `element` (JSON text) over the rows of `from` (the SQL after
 * `select … from`, with its `where`), in `orderBy`; `[]` when there are none.
 */
export function jsonArray(
  element: JsonText,
  orderBy: RawBuilder<unknown>,
  from: RawBuilder<unknown>,
): JsonText {
  return jsonText(
    sql`coalesce((select '[' || string_agg(${element.json}, ',' order by ${orderBy}) || ']' from ${from}), '[]')`,
  )
}

function jsonValue(value: RawBuilder<unknown> | JsonText): RawBuilder<unknown> {
  if (value instanceof JsonText) return sql`coalesce(${value.json}, 'null')`
  return sql`coalesce(to_json(${value})::text, 'null')`
}

/** `concat` of `parts`, nested when they pass the argument limit. */
function concatAll(parts: RawBuilder<unknown>[]): RawBuilder<unknown> {
  if (parts.length <= MAX_ARGUMENTS) return sql`concat(${sql.join(parts)})`
  const chunks: RawBuilder<unknown>[] = []
  for (let i = 0; i < parts.length; i += MAX_ARGUMENTS) {
    chunks.push(concatAll(parts.slice(i, i + MAX_ARGUMENTS)))
  }
  return concatAll(chunks)
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
