import pg from 'pg'
import { vi } from 'vitest'

/**
 * Every round trip any pg client makes while `run` runs, in order, as the statements it
 * sends, each with its whitespace squeezed and cut to `width` characters: what a request
 * or transaction costs in round trips. Statements sent in one round trip
 * (`src/db/client.ts`: a transaction's `begin` with its first statement, its `commit`
 * with its last, held writes with the statement that follows them) read
 * `begin; <statement>; <statement>; commit`.
 */
export async function statementsOf(run: () => Promise<unknown>, width = 80): Promise<string[]> {
  const trips: string[][] = []
  const original = pg.Client.prototype.query
  const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
    this: pg.Client,
    ...args: unknown[]
  ) {
    const [first] = args
    const squeezed = (text: string) => text.replace(/\s+/g, ' ').trim().slice(0, width)
    if (typeof first === 'string') trips.push([squeezed(first)])
    else {
      const query = first as {
        text: string
        statements?: { text: string }[]
        pipeline?: { begin: boolean; commit: boolean }
      }
      const texts = (query.statements ?? [query]).map((statement) => squeezed(statement.text))
      trips.push([
        ...(query.pipeline?.begin ? ['begin'] : []),
        ...texts,
        ...(query.pipeline?.commit ? ['commit'] : []),
      ])
    }
    return Reflect.apply(original, this, args)
  } as never)
  try {
    await run()
  } finally {
    spy.mockRestore()
  }
  return trips.map((trip) => trip.join('; '))
}
