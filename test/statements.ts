import pg from 'pg'
import { vi } from 'vitest'

/**
 * Every statement any pg client sends while `run` runs, in order, with its whitespace
 * squeezed and cut to `width` characters: what a request or transaction costs in round trips.
 */
export async function statementsOf(run: () => Promise<unknown>, width = 80): Promise<string[]> {
  const texts: string[] = []
  const original = pg.Client.prototype.query
  const spy = vi.spyOn(pg.Client.prototype, 'query').mockImplementation(function (
    this: pg.Client,
    ...args: unknown[]
  ) {
    const [first] = args
    texts.push(typeof first === 'string' ? first : String((first as { text: string }).text))
    return Reflect.apply(original, this, args)
  } as never)
  try {
    await run()
  } finally {
    spy.mockRestore()
  }
  return texts.map((text) => text.replace(/\s+/g, ' ').trim().slice(0, width))
}
