import { type Compilable, CompiledQuery } from 'kysely'

/** Stands in for the `index`th value of a statement while Kysely builds it. */
class Slot {
  constructor(readonly index: number) {}
}

interface Template {
  sql: string
  /** Kysely's parameters, with a `Slot` where a call's value goes. */
  parameters: unknown[]
}

/**
 * Statements of a hot path that Kysely builds once per shape, then sends with each
 * call's values. Building and compiling a statement with Kysely's immutable nodes costs
 * this process more than node-postgres spends sending it, and the text of such a
 * statement only changes with its shape: which columns it writes, how many rows.
 *
 * `build` gets `$`, which stands in for the call's `values[i]`: use it as an SQL value
 * only (in `where`, `values`, `set`, or an `sql` template), never in the builder's own
 * logic, which sees a stand-in. Everything the text depends on besides the values goes
 * in `shape`. The statement is typed by what `build` returns, as Kysely types it.
 *
 * @example
 * const LOCK = new StatementCache()
 * const query = LOCK.compile('', [environmentId, id], ($) =>
 *   db.selectFrom('invoices').selectAll().where('environment_id', '=', $(0)).where('id', '=', $(1)).forUpdate(),
 * )
 * const { rows } = await db.executeQuery(query)
 */
export class StatementCache {
  readonly #templates = new Map<string, Template>()

  constructor(private readonly maxShapes = 64) {}

  compile<R>(
    shape: string,
    values: readonly unknown[],
    build: ($: (index: number) => never) => Compilable<R>,
  ): CompiledQuery<R> {
    let template = this.#templates.get(shape)
    if (!template) {
      template = this.#build(values.length, build)
      // A shape past the bound runs as built, without being kept: memory stays bounded.
      if (this.#templates.size < this.maxShapes) this.#templates.set(shape, template)
    }
    const parameters = template.parameters.map((p) => (p instanceof Slot ? values[p.index] : p))
    return CompiledQuery.raw(template.sql, parameters) as CompiledQuery<R>
  }

  #build<R>(count: number, build: ($: (index: number) => never) => Compilable<R>): Template {
    const slots = Array.from({ length: count }, (_, i) => new Slot(i))
    const { sql, parameters } = build((index) => slots[index] as never).compile()
    const used = new Set(parameters.filter((p) => p instanceof Slot))
    if (used.size !== count) {
      throw new Error(`A cached statement used ${used.size} of its ${count} values: ${sql}`)
    }
    return { sql, parameters: [...parameters] }
  }
}

/**
 * A row for a cached insert: the columns it sets (those not `undefined`, as Kysely
 * writes them), their values in that order, the same row made of stand-ins for
 * `build` (`$(first)` for the first column on), and `shape`, the columns in order,
 * which the statement's shape must include: another caller's row may set other
 * columns, or the same ones in another order.
 */
export function rowOf<T extends object>(row: T) {
  const record = row as Record<string, unknown>
  const columns = Object.keys(record).filter((column) => record[column] !== undefined)
  return {
    columns,
    shape: columns.join(),
    values: columns.map((column) => record[column]),
    slots: ($: (index: number) => never, first = 0) =>
      Object.fromEntries(columns.map((column, i) => [column, $(first + i)])) as T,
  }
}
