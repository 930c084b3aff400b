/**
 * Stripe's request encoding: `application/x-www-form-urlencoded` (or a query string) whose
 * keys nest with brackets, the way Rack and `qs` read them:
 *
 * ```
 * metadata[order_id]=42&line_items[0][price_data][currency]=usd&expand[]=latest_charge
 * → { metadata: { order_id: '42' }, line_items: [{ price_data: { currency: 'usd' } }],
 *     expand: ['latest_charge'] }
 * ```
 *
 * Every leaf stays a string, as on the wire; `params.ts` reads them as integers, booleans…
 */
export type FormValue = string | FormValue[] | FormObject

export interface FormObject {
  [key: string]: FormValue
}

/** A key the parser cannot place, such as `a=1&a[b]=2` (both a value and a hash). */
export class FormParseError extends Error {
  constructor(readonly param: string) {
    super(`Invalid value for ${param}: it is given both as a value and as a hash or array.`)
  }
}

type Node = { kind: 'leaf'; value: string } | Branch

interface Branch {
  kind: 'branch'
  children: Map<string, Node>
  /** Next index handed out to an `a[]` (append) segment. */
  nextIndex: number
}

export function parseForm(encoded: string): FormObject {
  const root = newBranch()
  for (const [key, value] of new URLSearchParams(encoded)) {
    if (key === '') continue
    insert(root, keySegments(key), value, key)
  }
  return toFormObject(root)
}

/** `a[b][0][]` → `['a', 'b', '0', '']`; a key without well-formed brackets is one segment. */
export function keySegments(key: string): string[] {
  const open = key.indexOf('[')
  if (open <= 0 || !key.endsWith(']')) return [key]
  const segments = [key.slice(0, open)]
  const rest = key.slice(open)
  const pattern = /\[([^[\]]*)\]/g
  let consumed = 0
  for (const match of rest.matchAll(pattern)) {
    if (match.index !== consumed) return [key]
    segments.push(match[1] ?? '')
    consumed += match[0].length
  }
  return consumed === rest.length ? segments : [key]
}

function insert(branch: Branch, segments: string[], value: string, fullKey: string): void {
  const [head, ...rest] = segments
  if (head === undefined) return
  const name = head === '' ? String(branch.nextIndex) : head
  if (isIndex(name)) branch.nextIndex = Math.max(branch.nextIndex, Number(name) + 1)
  if (rest.length === 0) {
    if (branch.children.get(name)?.kind === 'branch') throw new FormParseError(fullKey)
    branch.children.set(name, { kind: 'leaf', value })
    return
  }
  let child = branch.children.get(name)
  if (child === undefined) {
    child = newBranch()
    branch.children.set(name, child)
  }
  if (child.kind === 'leaf') throw new FormParseError(fullKey)
  insert(child, rest, value, fullKey)
}

function newBranch(): Branch {
  return { kind: 'branch', children: new Map(), nextIndex: 0 }
}

function isIndex(segment: string): boolean {
  return /^(0|[1-9]\d{0,5})$/.test(segment)
}

function toFormValue(node: Node): FormValue {
  if (node.kind === 'leaf') return node.value
  const keys = [...node.children.keys()]
  if (keys.length > 0 && keys.every(isIndex)) {
    return keys
      .map(Number)
      .sort((a, b) => a - b)
      .map((index) => toFormValue(node.children.get(String(index))!))
  }
  return toFormObject(node)
}

function toFormObject(branch: Branch): FormObject {
  // Object.fromEntries defines own properties, so a `__proto__` key stays plain data.
  return Object.fromEntries(
    [...branch.children].map(([key, child]) => [key, toFormValue(child)] as const),
  )
}
