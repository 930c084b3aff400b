import { resourceMissing } from './errors.ts'
import type { StoredRecord } from './state.ts'

/**
 * The record under `id`, or Stripe's 404 (`No such customer: 'cus_…'`, naming `param`).
 * Every resource finds its objects through here, so a wrong id fails the same way everywhere.
 */
export function requireRecord<T extends StoredRecord>(
  records: ReadonlyMap<string, T>,
  objectName: string,
  id: string,
  param = 'id',
): T {
  const record = records.get(id)
  if (record === undefined) throw resourceMissing(objectName, id, param)
  return record
}
