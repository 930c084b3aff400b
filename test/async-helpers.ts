/**
 * A gate for a test to hold a call at, and its opening: `promise` resolves once `open` is
 * called (Node 20 has no `Promise.withResolvers`).
 *
 * @example
 * const { promise: answered, open: answer } = opener()
 */
export function opener() {
  let open: () => void = () => undefined
  const promise = new Promise<void>((resolve) => {
    open = resolve
  })
  return { promise, open }
}
