import type { EventOrigin } from './events.ts'
import type { JsonObject } from './json.ts'
import type { Params } from './params.ts'
import type { EmulatorState } from './state.ts'

export type HttpMethod = 'GET' | 'POST' | 'DELETE'

/** What a handler sees of one authenticated API request. */
export interface RequestContext {
  readonly state: EmulatorState
  /** Body (POST) merged over the query string, bracket keys nested. */
  readonly params: Params
  /** Who caused the events this request emits: its `request-id` and idempotency key. */
  readonly origin: EventOrigin
  /** A `:name` segment of the route's path. */
  pathParam(name: string): string
}

/** Answers 200 with the returned object, or throws a `StripeHttpError`. */
export type Handler = (context: RequestContext) => JsonObject

interface Route {
  method: HttpMethod
  segments: string[]
  handler: Handler
}

export type RouteMatch =
  | { found: true; handler: Handler; pathParams: ReadonlyMap<string, string> }
  | { found: false }

/** Method + path patterns like `/v1/customers/:id/payment_methods`. */
export class Router {
  private readonly routes: Route[] = []

  get(pattern: string, handler: Handler): void {
    this.add('GET', pattern, handler)
  }

  post(pattern: string, handler: Handler): void {
    this.add('POST', pattern, handler)
  }

  delete(pattern: string, handler: Handler): void {
    this.add('DELETE', pattern, handler)
  }

  match(method: string, path: string): RouteMatch {
    const segments = splitPath(path)
    for (const route of this.routes) {
      if (route.method !== method || route.segments.length !== segments.length) continue
      const pathParams = new Map<string, string>()
      const matches = route.segments.every((pattern, index) => {
        const actual = segments[index] ?? ''
        if (pattern.startsWith(':')) {
          pathParams.set(pattern.slice(1), actual)
          return actual !== ''
        }
        return pattern === actual
      })
      if (matches) return { found: true, handler: route.handler, pathParams }
    }
    return { found: false }
  }

  private add(method: HttpMethod, pattern: string, handler: Handler): void {
    this.routes.push({ method, segments: splitPath(pattern), handler })
  }
}

function splitPath(path: string): string[] {
  return path
    .split('/')
    .filter((segment) => segment !== '')
    .map((segment) => {
      try {
        return decodeURIComponent(segment)
      } catch {
        return segment
      }
    })
}
