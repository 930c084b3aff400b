import pg from 'pg'
import { vi } from 'vitest'

/**
 * Every statement any pg client sends while `run` runs, in order, with its whitespace
 * squeezed and cut to `width` characters: what a request or transaction costs in round trips.
 * A statement sent in one round trip with its transaction's `begin` or `commit`
 * (`src/db/client.ts`) reads `begin; <statement>` or `<statement>; commit`.
 */
export async function statementsOf(run: () => Promise<unknown>, width = 80): Promise<string[]> {
  const texts: { text: string; begin?: boolean; commit?: boolean }[] = []
  const original = pg.Client.prototype.query
  const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
    this: pg.Client,
    ...args: unknown[]
  ) {
    const [first] = args
    if (typeof first === 'string') texts.push({ text: first })
    else {
      const query = first as { text: string; pipeline?: { begin: boolean; commit: boolean } }
      texts.push({ text: String(query.text), ...query.pipeline })
    }
    return Reflect.apply(original, this, args)
  } as never)
  try {
    await run()
  } finally {
    spy.mockRestore()
  }
  return texts.map(({ text, begin, commit }) => {
    const statement = text.replace(/\s+/g, ' ').trim().slice(0, width)
    return `${begin ? 'begin; ' : ''}${statement}${commit ? '; commit' : ''}`
  })
}
