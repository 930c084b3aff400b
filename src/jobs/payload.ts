/**
 * A job's payload with its string fields checked: graphile-worker hands a task whatever
 * JSON was queued, and a job queued wrong must fail loudly rather than act on undefined.
 *
 * @example
 * const { refundId } = stringFields(ASK_REFUND_AGAIN, payload, ['refundId'])
 */
export function stringFields<K extends string>(
  task: string,
  payload: unknown,
  keys: readonly K[],
): Record<K, string> {
  const fields = (typeof payload === 'object' && payload !== null ? payload : {}) as Record<
    string,
    unknown
  >
  if (keys.some((key) => typeof fields[key] !== 'string')) {
    throw new Error(`${task} needs {${keys.join(', ')}}`)
  }
  return fields as Record<K, string>
}
