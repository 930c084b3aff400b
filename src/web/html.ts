import type { FastifyInstance, FastifyReply } from 'fastify'

/** Parses the pages' HTML forms (`application/x-www-form-urlencoded`) into plain string fields, in `app`'s scope. */
export function registerFormParser(app: FastifyInstance): void {
  app.addContentTypeParser(
    'application/x-www-form-urlencoded',
    { parseAs: 'string' },
    (_request, body, done) => {
      done(null, Object.fromEntries(new URLSearchParams(String(body))))
    },
  )
}

/**
 * Sends an HTML page with the headers every page of Payrail's gets: never cached (a page
 * shows a payment as it stood), never framed by another site (its buttons pay, cancel and
 * refund: clickjacking), no scripts or assets from anywhere. `formsToSelf` also keeps its
 * forms' posts on this server (the dashboard's); a hosted page's forms are answered with
 * a redirect to the merchant's own URLs, which that directive would block.
 */
export function sendHtml(
  reply: FastifyReply,
  status: number,
  body: string,
  options: { formsToSelf?: boolean } = {},
): FastifyReply {
  return reply
    .code(status)
    .header('cache-control', 'no-store')
    .header('x-frame-options', 'DENY')
    .header(
      'content-security-policy',
      `default-src 'none'; style-src 'unsafe-inline';${options.formsToSelf ? " form-action 'self';" : ''} frame-ancestors 'none'`,
    )
    .type('text/html; charset=utf-8')
    .send(body)
}

/** Escapes text for HTML element content and attribute values. */
export function escapeHtml(value: string): string {
  return value.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`)
}

/** A minimal, self-contained page (no external assets, works offline). */
export function page(title: string, body: string): string {
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${escapeHtml(title)}</title>
<style>
  body { font-family: system-ui, sans-serif; background: #f6f7f9; color: #1a1f36; margin: 0; }
  main { max-width: 420px; margin: 48px auto; background: #fff; border-radius: 12px; padding: 28px;
         box-shadow: 0 2px 12px rgba(0,0,0,.08); }
  h1 { font-size: 20px; margin: 0 0 4px; } .amount { font-size: 28px; font-weight: 600; margin: 8px 0 20px; }
  label { display: block; font-size: 13px; margin: 12px 0 4px; color: #4f566b; }
  input { width: 100%; box-sizing: border-box; padding: 10px; border: 1px solid #d0d5dd; border-radius: 6px; font-size: 15px; }
  .row { display: flex; gap: 12px; } .row > div { flex: 1; }
  button { width: 100%; margin-top: 18px; padding: 12px; border: 0; border-radius: 6px; background: #635bff; color: #fff;
           font-size: 15px; cursor: pointer; } button.secondary { background: #e3e8ee; color: #1a1f36; }
  .error { background: #fde8e8; color: #9b1c1c; padding: 10px; border-radius: 6px; margin-top: 12px; }
  .ok { background: #e6f6ec; color: #05603a; padding: 10px; border-radius: 6px; }
  .hint { font-size: 12px; color: #697386; margin-top: 16px; } code { font-size: 12px; }
  .badge { display: inline-block; font-size: 11px; background: #fff3c4; color: #7a5b00; padding: 2px 6px; border-radius: 4px; }
</style>
</head>
<body><main>${body}</main></body>
</html>`
}
