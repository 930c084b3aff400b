import type { Clock } from '../core/clock.ts'
import { AppError, validationError } from '../core/errors.ts'
import type { Scope } from '../core/principal.ts'
import type { SecretBox } from '../core/secret-box.ts'
import type { Db } from '../db/client.ts'
import type { PaymentMethodType } from '../db/database.ts'
import type { Loopback } from '../http/loopback.ts'
import type { JobQueue } from '../jobs/queue.ts'
import { activeConnection } from '../modules/gateway-connections/service.ts'
import { findEnvironment } from '../modules/tenants/repository.ts'
import { bitpayGateway } from './bitpay/bitpay.gateway.ts'
import { checkoutGateway } from './checkout/checkout.gateway.ts'
import { coinpaymentsGateway } from './coinpayments/coinpayments.gateway.ts'
import { externalGateway } from './external/external.gateway.ts'
import { GATEWAY_NAMES, type Gateway, type GatewayContext, type GatewayName } from './gateway.ts'
import { offlineGateway } from './offline/offline.gateway.ts'
import { platformGateway } from './platform/platform.gateway.ts'
import { sandboxGateway } from './sandbox/sandbox.gateway.ts'
import { stripeGateway } from './stripe/stripe.gateway.ts'

const GATEWAYS: Partial<Record<GatewayName, Gateway>> = {
  sandbox: sandboxGateway,
  platform: platformGateway,
  offline: offlineGateway,
  external: externalGateway,
  stripe: stripeGateway,
  checkout: checkoutGateway,
  bitpay: bitpayGateway,
  coinpayments: coinpaymentsGateway,
}

/** The rail a method type uses when the request names none. */
const DEFAULT_GATEWAY: Partial<Record<PaymentMethodType, GatewayName>> = {
  CREDITS: 'platform',
  OFFLINE: 'offline',
  EXTERNAL: 'external',
}

/** Gateways that work without a connection: Payrail's own rails. */
const BUILT_IN: readonly GatewayName[] = ['sandbox', 'platform', 'offline']

export function isGatewayName(name: string): name is GatewayName {
  return (GATEWAY_NAMES as readonly string[]).includes(name)
}

/** The gateway by name; an unknown or not yet available one is a 400 naming the field. */
export function gatewayFor(name: string): Gateway {
  const gateway = isGatewayName(name) ? GATEWAYS[name] : undefined
  if (!gateway) {
    throw validationError(
      `payment_gateway must be one of ${Object.keys(GATEWAYS).join(', ')}, got '${name}'`,
      {
        field: 'payment_gateway',
      },
    )
  }
  return gateway
}

/**
 * Which gateway a payment uses: the one asked for (which must take the method
 * type), else the method type's default. PAYMENT_LINK and CRYPTO need one named.
 */
export function resolveGateway(
  methodType: PaymentMethodType,
  requested: string | undefined,
): Gateway {
  const name = requested ?? DEFAULT_GATEWAY[methodType]
  if (!name) {
    throw validationError(`${methodType} payments need a payment_gateway`, {
      field: 'payment_gateway',
    })
  }
  const gateway = gatewayFor(name)
  if (!gateway.capabilities.methodTypes.includes(methodType)) {
    throw new AppError(
      'not_supported',
      `The ${gateway.name} gateway does not take ${methodType} payments`,
      {
        payment_gateway: gateway.name,
        payment_method_type: methodType,
        supported: gateway.capabilities.methodTypes,
      },
    )
  }
  return gateway
}

export interface GatewayDeps {
  db: Db
  clock: Clock
  secretBox: SecretBox
  jobs: JobQueue
  loopback: Loopback
  config: { publicUrl: string }
}

/**
 * What a gateway call needs in this environment. Connected gateways use the
 * connection's credentials and settings (404 style 400 when not connected); the
 * sandbox signs with a secret derived from PAYRAIL_SECRET_KEY per environment.
 */
export async function gatewayContext(
  deps: GatewayDeps,
  scope: Scope,
  gateway: GatewayName,
): Promise<GatewayContext> {
  const base = {
    scope,
    publicUrl: deps.config.publicUrl,
    clock: deps.clock,
    db: deps.db,
    jobs: deps.jobs,
    loopback: deps.loopback,
  }
  if (gateway === 'sandbox') {
    return {
      ...base,
      credentials: { webhook_secret: sandboxSecret(deps.secretBox, scope) },
      settings: {},
    }
  }
  if (BUILT_IN.includes(gateway)) return { ...base, credentials: null, settings: {} }
  const opened = await activeConnection(deps, scope, gateway)
  if (!opened) {
    throw validationError(
      `The ${gateway} gateway is not connected in this environment; POST /v1/gateway_connections first`,
      {
        field: 'payment_gateway',
        payment_gateway: gateway,
      },
    )
  }
  return { ...base, credentials: opened.credentials, settings: opened.connection.settings }
}

/** Whether a gateway can be used in this environment right now (built in, or connected). */
export async function isGatewayAvailable(
  deps: Pick<GatewayDeps, 'db' | 'secretBox'>,
  scope: Scope,
  gateway: GatewayName,
) {
  if (!GATEWAYS[gateway]) return false
  if (gateway === 'sandbox') return sandboxAllowed(deps.db, scope)
  if (BUILT_IN.includes(gateway)) return true
  return (await activeConnection(deps, scope, gateway)) !== undefined
}

export function availableGatewayNames(): GatewayName[] {
  return GATEWAY_NAMES.filter((name) => GATEWAYS[name] !== undefined)
}

function sandboxSecret(secretBox: SecretBox, scope: Scope): string {
  return secretBox.derive(`sandbox-webhook:${scope.environmentId}`)
}

/** The sandbox pays with test cards: only in a test environment. */
async function sandboxAllowed(db: Db, scope: Scope): Promise<boolean> {
  return (await findEnvironment(db, scope.environmentId))?.type === 'test'
}

/**
 * Refuses to start money through the sandbox in a live environment (a new payment, a
 * checkout opened, a card charged): its test cards would pay for orders with no money
 * taken. What exists already (a cancel, a refund, a webhook) still goes through.
 */
export async function assertMayTakeMoney(
  deps: Pick<GatewayDeps, 'db'>,
  scope: Scope,
  gateway: GatewayName,
): Promise<void> {
  if (gateway === 'sandbox' && !(await sandboxAllowed(deps.db, scope))) {
    throw validationError(
      'The sandbox gateway takes no payments in a live environment: its test cards pay nothing. Name a connected gateway',
      { field: 'payment_gateway', payment_gateway: gateway },
    )
  }
}
