import type { FastifyInstance } from 'fastify'

/**
 * Delivers an HTTP request to Payrail's own routes: through the running app
 * (`inject`, the full pipeline of routing, parsing and verification, with no
 * network) when there is one in this process, otherwise over HTTP to the public URL
 * (a `payrail worker` retrying a delivery). The built-in sandbox gateway reports
 * outcomes through it, down the same path a real gateway's webhooks take.
 */
export class Loopback {
  #app: FastifyInstance | undefined
  /** Read at each request: a server started on port 0 learns its public URL once it listens. */
  readonly #config: { readonly publicUrl: string }

  constructor(config: { readonly publicUrl: string }) {
    this.#config = config
  }

  bind(app: FastifyInstance): void {
    this.#app = app
  }

  async post(path: string, body: string, headers: Record<string, string>): Promise<number> {
    const allHeaders = { 'content-type': 'application/json', ...headers }
    if (this.#app) {
      const response = await this.#app.inject({
        method: 'POST',
        url: path,
        headers: allHeaders,
        payload: body,
      })
      return response.statusCode
    }
    const response = await fetch(`${this.#config.publicUrl}${path}`, {
      method: 'POST',
      headers: allHeaders,
      body,
    })
    return response.status
  }
}
