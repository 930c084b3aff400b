import { gatewayContext } from '../../gateways/registry.ts'
import { deliverSandboxEvent } from '../../gateways/sandbox/sandbox-provider.ts'
import type { PaymentDeps } from '../../modules/payments/service.ts'

export { SANDBOX_DELIVERY_TASK } from '../../gateways/sandbox/sandbox-provider.ts'

/**
 * Retries a sandbox notification Payrail did not accept at once, re-signed with a
 * fresh timestamp; throwing makes graphile-worker retry with exponential backoff,
 * as a provider keeps retrying until it gets a 2xx.
 */
export async function deliverSandboxWebhook(deps: PaymentDeps, payload: unknown): Promise<void> {
  const job = parsePayload(payload)
  const match = /^\/v1\/webhooks\/sandbox\/([^/]+)\/([^/]+)$/.exec(job.path)
  if (!match?.[1] || !match[2]) throw new Error(`Not a sandbox webhook path: ${job.path}`)
  const scope = {
    tenantId: decodeURIComponent(match[1]),
    environmentId: decodeURIComponent(match[2]),
  }
  const ctx = await gatewayContext(deps, scope, 'sandbox')
  if (!(await deliverSandboxEvent(ctx, job.path, job.body)))
    throw new Error('sandbox webhook delivery was not accepted')
}

function parsePayload(payload: unknown): { path: string; body: string } {
  if (
    typeof payload === 'object' &&
    payload !== null &&
    typeof (payload as { path?: unknown }).path === 'string' &&
    typeof (payload as { body?: unknown }).body === 'string'
  ) {
    return { path: (payload as { path: string }).path, body: (payload as { body: string }).body }
  }
  throw new Error('deliver_sandbox_webhook needs {path, body}')
}
