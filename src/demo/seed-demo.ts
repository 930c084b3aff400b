import { sql } from 'kysely'
import { addIntervals } from '../core/billing-period.ts'
import { ManualClock } from '../core/clock.ts'
import { AppError, validationError } from '../core/errors.ts'
import { adminAccess, type Scope } from '../core/principal.ts'
import type { Db } from '../db/client.ts'
import type {
  Invoice,
  InvoicePaymentStatus,
  InvoiceStatus,
  OrderStatus,
  OrderType,
  Price,
  SubscriptionStatus,
} from '../db/database.ts'
import { inTransaction } from '../db/transaction.ts'
import type { ListRequest, TimeRange } from '../http/list-query.ts'
import type { Logger } from '../logger.ts'
import { listTransactions } from '../modules/balances/service.ts'
import { adjustBalance, createCustomer, listCustomers } from '../modules/customers/service.ts'
import { createDiscount, listDiscounts } from '../modules/discounts/service.ts'
import { createInvoice, getInvoice, listInvoices } from '../modules/invoices/service.ts'
import type { CreateOrderBody } from '../modules/orders/schemas.ts'
import { createOrder, listOrders } from '../modules/orders/service.ts'
import { createProduct } from '../modules/products/service.ts'
import {
  applyInvoicePayment,
  applyInvoiceRefund,
  finalizeInvoice,
  markInvoiceUncollectible,
  voidInvoice,
} from '../modules/settlement/service.ts'
import {
  cancelSubscription,
  listSubscriptions,
  renewDueSubscriptions,
  updateSubscriptionSettings,
} from '../modules/subscriptions/service.ts'
import { requireEnvironment } from '../modules/tenants/service.ts'
import { inOneTransaction } from './one-transaction.ts'

/**
 * `payrail demo`: a year of believable billing history in a tenant's test
 * environment, written only through the services (the same paths the API and the
 * jobs take), with time driven by a ManualClock that starts at the first day of
 * the month 13 months before `now` and walks forward month by month.
 *
 * The story: SaaS customers sign up over the year (Starter / Pro / Team, monthly
 * or yearly, USD or EUR), buy onboarding packages and API credits, use discount
 * codes, pay most renewals on time, some late, one stops paying (past_due), one
 * cancels at once, one at period end, one upgrades; manual invoices end up paid,
 * overpaid, partially paid, refunded, voided, uncollectible or still in draft.
 */

export interface DemoDeps {
  db: Db
  logger: Logger
}

export interface DemoOptions {
  /** The end of the story; the default is the real current time. */
  now?: Date
  /** How many customers to create (8 to 500; default 24). The first 8 carry the scripted story. */
  customers?: number
  /** Stops the demo (Ctrl-C): it then fails with the abort reason, and nothing is written. */
  signal?: AbortSignal
}

/** What the demo created, each object counted in its final state. */
export interface DemoSummary {
  environmentId: string
  /** The first and last moment of the story's clock. */
  from: Date
  to: Date
  customers: number
  products: number
  prices: number
  discounts: number
  orders: {
    total: number
    byType: Record<OrderType, number>
    byStatus: Record<OrderStatus, number>
  }
  invoices: {
    total: number
    byInvoiceStatus: Record<InvoiceStatus, number>
    byPaymentStatus: Record<InvoicePaymentStatus, number>
  }
  subscriptions: { total: number; byStatus: Record<SubscriptionStatus, number> }
  balanceTransactions: number
  /** Periods renewed or ended by the renewal job while the demo clock ran. */
  renewals: number
}

export const DEFAULT_DEMO_CUSTOMERS = 24
export const MIN_DEMO_CUSTOMERS = 8
export const MAX_DEMO_CUSTOMERS = 500
/** The external id of the demo's first customer: its presence means the demo already ran here. */
export const DEMO_MARKER_EXTERNAL_ID = 'demo_acct_1001'

const DAY_MS = 86_400_000
const MONTHS_OF_HISTORY = 13
/** Steps 0–12 are the months of the story; the final step is `now`. */
const LAST_MONTH_STEP = MONTHS_OF_HISTORY - 1
const FINAL_STEP = MONTHS_OF_HISTORY
const SEED = 20_240_601
const RENEWAL_DAY = 20
const RENEWAL_PAYMENT_DAY = 21

/**
 * Fills the test environment of `scope` with demo customers, products, discounts,
 * orders, invoices, payments and a year of subscription renewals.
 *
 * All or nothing: everything is written in one transaction (each service's own
 * transactions are savepoints of it), committed when the story is complete. A run
 * that fails or is stopped (`signal`, or the process killed) leaves nothing, and the
 * demo can run again. Meanwhile the environment's invoice numbering waits for it.
 *
 * Runs once per environment: when the demo's first customer (external id
 * `demo_acct_1001`) or one of its discount codes already exists, it refuses with a
 * 409 `conflict` before writing anything (a second run started meanwhile waits for
 * the first, then refuses). It also refuses an environment that is not the
 * tenant's `test` one. Everything but ids is the same on every run with the same
 * `now` and `customers`.
 *
 * @example
 * const summary = await seedDemo({ db, logger }, { tenantId, environmentId }, { customers: 12 })
 * logger.info(summary.invoices.byPaymentStatus, 'demo invoices by payment status')
 */
export async function seedDemo(
  deps: DemoDeps,
  scope: Scope,
  options: DemoOptions = {},
): Promise<DemoSummary> {
  const now = options.now ?? new Date()
  const customerCount = validCustomerCount(options.customers)
  const summary = await inOneTransaction(
    deps.db,
    (db) => tellStory({ db, logger: deps.logger }, scope, now, customerCount),
    options.signal,
  )
  deps.logger.info({ environment_id: scope.environmentId }, 'demo data created')
  return summary
}

/** The whole story, on `deps.db`: one transaction (`seedDemo`). */
async function tellStory(
  deps: DemoDeps,
  scope: Scope,
  now: Date,
  customerCount: number,
): Promise<DemoSummary> {
  await assertTestEnvironment(deps.db, scope)
  await lockDemoOf(deps.db, scope)
  await assertNoDemoData(deps.db, scope)

  const start = storyStart(now)
  const random = seededRandom(SEED)
  const run: DemoRun = {
    ...deps,
    scope,
    clock: new ManualClock(start),
    start,
    now,
    random,
    personas: buildPersonas(customerCount, random),
    catalog: undefined,
    customers: new Map(),
    subscriptions: [],
    planSubscriptions: new Map(),
    invoiceIds: new Set(),
    orderIds: new Set(),
    notes: new Map(),
    payLater: [],
    renewals: 0,
    productCount: 0,
    priceCount: 0,
    discountCount: 0,
  }
  const events = storyEvents(run)
  for (let step = 0; step <= LAST_MONTH_STEP; step++) await playMonth(run, step, events)
  await playFinalStep(run)
  return summarize(run)
}

// ---------------------------------------------------------------------------
// Run state

type DemoCurrency = 'usd' | 'eur'
type Tier = 'starter' | 'pro' | 'team'
type BillingInterval = 'month' | 'year'

type PaymentHabit =
  | { kind: 'reliable' }
  | { kind: 'late_once'; step: number }
  | { kind: 'stops'; fromStep: number }
  | { kind: 'random'; lateChance: number }

interface PlanChoice {
  tier: Tier
  interval: BillingInterval
  discountCode?: string
}

interface Persona {
  name: string
  contact: string
  email: string
  address: { line1: string; city: string; state?: string; postal_code: string; country: string }
  currency: DemoCurrency
  autoPay: boolean
  startStep: number
  plan: PlanChoice | null
  habit: PaymentHabit
  onboarding: boolean
  topUpStep: number | null
}

/** What a customer does over the story, apart from who they are. */
type Role = Omit<Persona, 'name' | 'contact' | 'email' | 'address' | 'currency'>

interface Catalog {
  plans: Record<Tier, Record<BillingInterval, Record<DemoCurrency, Price>>>
  onboarding: Record<DemoCurrency, Price>
  credits: Record<DemoCurrency, Price[]>
}

interface DemoSubscription {
  id: string
  habit: PaymentHabit
}

interface DemoRun extends DemoDeps {
  scope: Scope
  clock: ManualClock
  start: Date
  now: Date
  random: () => number
  personas: Persona[]
  catalog: Catalog | undefined
  /** Customer id by persona index, once signed up. */
  customers: Map<number, string>
  subscriptions: DemoSubscription[]
  /** The subscription each customer took at sign-up, by persona index. */
  planSubscriptions: Map<number, string>
  invoiceIds: Set<string>
  orderIds: Set<string>
  /** Ids a later story event needs, by a name. */
  notes: Map<string, string>
  /** Renewal invoices to pay at a later step. */
  payLater: { invoiceId: string; step: number }[]
  renewals: number
  productCount: number
  priceCount: number
  discountCount: number
}

interface StoryEvent {
  step: number
  day: number
  act: (run: DemoRun) => Promise<void>
}

// ---------------------------------------------------------------------------
// Guards

function validCustomerCount(requested: number | undefined): number {
  const count = requested ?? DEFAULT_DEMO_CUSTOMERS
  if (!Number.isInteger(count) || count < MIN_DEMO_CUSTOMERS || count > MAX_DEMO_CUSTOMERS) {
    throw validationError(
      `customers must be an integer from ${MIN_DEMO_CUSTOMERS} to ${MAX_DEMO_CUSTOMERS}, got ${count}`,
      { field: 'customers' },
    )
  }
  return count
}

async function assertTestEnvironment(db: Db, scope: Scope): Promise<void> {
  const test = await requireEnvironment(db, scope.tenantId, 'test')
  if (test.id !== scope.environmentId) {
    throw validationError('Demo data goes only into a tenant’s test environment', {
      environment_id: scope.environmentId,
      test_environment_id: test.id,
    })
  }
}

/**
 * One demo at a time per environment, until its transaction ends: a second one started
 * meanwhile then finds the first one's customers (and refuses), or, the first one rolled
 * back, none.
 */
async function lockDemoOf(db: Db, scope: Scope): Promise<void> {
  await sql`select pg_advisory_xact_lock(hashtextextended(${`payrail demo ${scope.environmentId}`}, 0))`.execute(
    db,
  )
}

async function assertNoDemoData(db: Db, scope: Scope): Promise<void> {
  const marker = await listCustomers(
    db,
    scope,
    { externalId: DEMO_MARKER_EXTERNAL_ID },
    firstPage('created_at'),
  )
  if (marker.total > 0) {
    throw new AppError(
      'conflict',
      `This environment already has demo data (customer '${DEMO_MARKER_EXTERNAL_ID}'); run the demo on a new tenant instead`,
      { external_id: DEMO_MARKER_EXTERNAL_ID },
    )
  }
  for (const discount of DISCOUNTS) {
    const taken = await listDiscounts(db, scope, { code: discount.code }, firstPage('created_at'))
    if (taken.total > 0) {
      throw new AppError(
        'conflict',
        `Discount code '${discount.code}' already exists in this environment; the demo needs it`,
        { code: discount.code },
      )
    }
  }
}

// ---------------------------------------------------------------------------
// Time

/** Midnight UTC on the first day of the month 13 months before `now`. */
function storyStart(now: Date): Date {
  return new Date(Date.UTC(now.getUTCFullYear(), now.getUTCMonth() - MONTHS_OF_HISTORY, 1))
}

function momentOf(run: DemoRun, step: number, day: number): Date {
  return new Date(addIntervals(run.start, 'month', step).getTime() + Math.round(day * DAY_MS))
}

/** Moves the clock forward (never back, never past `now`). */
function advanceTo(run: DemoRun, at: Date): void {
  const target = Math.min(at.getTime(), run.now.getTime())
  if (target > run.clock.now().getTime()) run.clock.set(new Date(target))
}

function atStep(run: DemoRun, step: number, day: number): void {
  advanceTo(run, momentOf(run, step, day))
}

// ---------------------------------------------------------------------------
// The months

async function playMonth(run: DemoRun, step: number, events: StoryEvent[]): Promise<void> {
  run.logger.debug({ step, at: momentOf(run, step, 0).toISOString() }, 'demo month')
  if (step === 0) await createCatalog(run)
  await signUpCustomersOf(run, step)
  if (step > 0) {
    atStep(run, step, RENEWAL_DAY)
    const renewedAt = run.clock.now()
    await renewNow(run)
    atStep(run, step, RENEWAL_PAYMENT_DAY)
    await payRenewals(run, step, renewedAt)
  }
  for (const event of events.filter((e) => e.step === step)) {
    atStep(run, step, event.day)
    await event.act(run)
  }
}

async function playFinalStep(run: DemoRun): Promise<void> {
  advanceTo(run, run.now)
  const renewedAt = run.clock.now()
  await renewNow(run)
  await payRenewals(run, FINAL_STEP, renewedAt)
  run.clock.set(run.now)
}

async function renewNow(run: DemoRun): Promise<void> {
  run.renewals += await renewDueSubscriptions(
    { db: run.db, clock: run.clock, logger: run.logger },
    { environmentId: run.scope.environmentId },
  )
}

// ---------------------------------------------------------------------------
// Catalog: products, prices, discounts

const TIER_PRICES: Record<Tier, { name: string; description: string; month: string[] }> = {
  starter: {
    name: 'Starter',
    description: 'For individuals and side projects',
    month: ['19', '18'],
  },
  pro: { name: 'Pro', description: 'For growing teams', month: ['49', '45'] },
  team: { name: 'Team', description: 'For organisations with many seats', month: ['99', '92'] },
}

const CREDIT_PRICES: Record<DemoCurrency, string[]> = {
  usd: ['10.00', '50.00', '100.00'],
  eur: ['50.00'],
}

const DISCOUNTS: readonly {
  code: string
  percentOff?: number
  amountOff?: string
  currency?: DemoCurrency
  maxRedemptions?: number
  expiresAfterDays?: number
}[] = [
  { code: 'WELCOME10', percentOff: 10 },
  { code: 'LAUNCH20', percentOff: 20, expiresAfterDays: 45 },
  { code: 'FOUNDERS50', percentOff: 50, maxRedemptions: 3 },
  { code: 'SAVE5USD', amountOff: '5.00', currency: 'usd' },
  { code: 'EURO15', amountOff: '15.00', currency: 'eur' },
]

async function createCatalog(run: DemoRun): Promise<void> {
  const plans = {
    starter: await createPlanProduct(run, 'starter'),
    pro: await createPlanProduct(run, 'pro'),
    team: await createPlanProduct(run, 'team'),
  }
  const onboarding = await createTracked(run, {
    name: 'Onboarding package',
    description: 'Two guided setup sessions and a data import',
    type: 'one_time',
    prices: [
      { amount: '250.00', currency: 'usd' },
      { amount: '230.00', currency: 'eur' },
    ],
  })
  const credits = await createTracked(run, {
    name: 'API credits',
    description: 'Prepaid credit for metered API calls',
    type: 'credit_top_up',
    prices: (['usd', 'eur'] as const).flatMap((currency) =>
      CREDIT_PRICES[currency].map((amount) => ({ amount, currency })),
    ),
  })
  run.catalog = {
    plans,
    onboarding: { usd: priceIn(onboarding, 'usd'), eur: priceIn(onboarding, 'eur') },
    credits: {
      usd: credits.filter((p) => p.currency === 'usd'),
      eur: credits.filter((p) => p.currency === 'eur'),
    },
  }
  for (const discount of DISCOUNTS) await createDemoDiscount(run, discount)
}

async function createPlanProduct(
  run: DemoRun,
  tier: Tier,
): Promise<Record<BillingInterval, Record<DemoCurrency, Price>>> {
  const { name, description, month } = TIER_PRICES[tier]
  const [usd = '0', eur = '0'] = month
  const prices = await createTracked(run, {
    name,
    description,
    type: 'recurring',
    prices: [
      { amount: `${usd}.00`, currency: 'usd', interval: 'month' },
      { amount: `${eur}.00`, currency: 'eur', interval: 'month' },
      // A year costs ten months.
      { amount: `${Number(usd) * 10}.00`, currency: 'usd', interval: 'year' },
      { amount: `${Number(eur) * 10}.00`, currency: 'eur', interval: 'year' },
    ],
    metadata: { tier },
  })
  const of = (interval: BillingInterval, currency: DemoCurrency) =>
    priceIn(prices, currency, interval)
  return {
    month: { usd: of('month', 'usd'), eur: of('month', 'eur') },
    year: { usd: of('year', 'usd'), eur: of('year', 'eur') },
  }
}

async function createTracked(
  run: DemoRun,
  body: Parameters<typeof createProduct>[2],
): Promise<Price[]> {
  const { prices } = await createProduct(
    run.db,
    run.scope,
    { ...body, metadata: { ...body.metadata, demo: 'true' } },
    run.clock,
  )
  run.productCount += 1
  run.priceCount += prices.length
  return prices
}

function priceIn(prices: Price[], currency: DemoCurrency, interval?: BillingInterval): Price {
  const price = prices.find(
    (p) => p.currency === currency && (interval === undefined || p.interval === interval),
  )
  if (!price) throw new Error(`demo catalog has no ${interval ?? 'one-off'} price in ${currency}`)
  return price
}

async function createDemoDiscount(run: DemoRun, discount: (typeof DISCOUNTS)[number]) {
  const expiresAt =
    discount.expiresAfterDays === undefined
      ? undefined
      : new Date(run.clock.now().getTime() + discount.expiresAfterDays * DAY_MS).toISOString()
  await createDiscount(
    run.db,
    run.scope,
    {
      code: discount.code,
      ...(discount.percentOff !== undefined && { percent_off: discount.percentOff }),
      ...(discount.amountOff !== undefined && {
        amount_off: discount.amountOff,
        currency: discount.currency,
      }),
      ...(discount.maxRedemptions !== undefined && { max_redemptions: discount.maxRedemptions }),
      ...(expiresAt !== undefined && { expires_at: expiresAt }),
      metadata: { demo: 'true' },
    },
    run.clock,
  )
  run.discountCount += 1
}

function catalogOf(run: DemoRun): Catalog {
  if (!run.catalog) throw new Error('demo catalog used before it was created')
  return run.catalog
}

// ---------------------------------------------------------------------------
// Customers

interface RosterEntry {
  name: string
  contact: string
  domain: string
  address: Persona['address']
}

/** Fictional companies; `.example` domains never resolve. */
const ROSTER: readonly RosterEntry[] = [
  entry('Northwind Analytics', 'Grace Kim', '500 Howard St', 'San Francisco', 'US', '94105', 'CA'),
  entry('Brightline Studio GmbH', 'Lukas Becker', 'Torstraße 112', 'Berlin', 'DE', '10119'),
  entry('Harbor & Vine', 'Maya Patel', '88 Greenwich St', 'New York', 'US', '10006', 'NY'),
  entry('Quillpad', 'Daniel Okafor', '1100 Congress Ave', 'Austin', 'US', '78701', 'TX'),
  entry('Atelier Lumière', 'Camille Durand', '14 Rue de Turenne', 'Paris', 'FR', '75004'),
  entry('Copperleaf Labs', 'Sam Rivera', '1801 Wewatta St', 'Denver', 'US', '80202', 'CO'),
  entry('Tidewater Logistics', 'Olivia Chen', '401 Union St', 'Seattle', 'US', '98101', 'WA'),
  entry('Fieldnote AI', 'Jonas Weber', '1 Broadway', 'Cambridge', 'US', '02142', 'MA'),
  entry('Kestrel Health', 'Aoife Byrne', '25 Baggot St Lower', 'Dublin', 'IE', 'D02 Y729'),
  entry('Pinecrest Dental', 'Robert Alvarez', '2 N Central Ave', 'Phoenix', 'US', '85004', 'AZ'),
  entry('Lumen & Co', 'Sofia Rossi', 'Via Tortona 27', 'Milano', 'IT', '20144'),
  entry('Stackwise', 'Priya Nair', '222 W Merchandise Mart', 'Chicago', 'US', '60654', 'IL'),
  entry('Mercado Verde', 'Lucía García', 'Calle de Alcalá 48', 'Madrid', 'ES', '28014'),
  entry('Orbital Freight', 'Ethan Brooks', '1 Peachtree Ctr', 'Atlanta', 'US', '30303', 'GA'),
  entry('Revontuli Design', 'Aino Virtanen', 'Mannerheimintie 12', 'Helsinki', 'FI', '00100'),
  entry('Cobalt Ridge Software', 'Marcus Webb', '920 SW 6th Ave', 'Portland', 'US', '97204', 'OR'),
]

const EURO_COUNTRIES = new Set(['DE', 'FR', 'IE', 'IT', 'ES', 'FI', 'NL'])
const FIRST_NAMES = [
  'Hannah',
  'Noah',
  'Amara',
  'Leo',
  'Zoe',
  'Mateo',
  'Isla',
  'Kai',
  'Nina',
  'Omar',
]
const LAST_NAMES = ['Schultz', 'Tanaka', 'Mensah', 'Novak', 'Ortiz', 'Lindqvist', 'Haddad', 'Reyes']
const CITIES: readonly Persona['address'][] = [
  { line1: '77 Main St', city: 'Boulder', state: 'CO', postal_code: '80302', country: 'US' },
  { line1: '9 Keizersgracht', city: 'Amsterdam', postal_code: '1015 CJ', country: 'NL' },
  { line1: '310 King St W', city: 'Toronto', state: 'ON', postal_code: 'M5V 1J5', country: 'CA' },
  { line1: '45 Elm St', city: 'Raleigh', state: 'NC', postal_code: '27601', country: 'US' },
]

function entry(
  name: string,
  contact: string,
  line1: string,
  city: string,
  country: string,
  postalCode: string,
  state?: string,
): RosterEntry {
  const domain = name
    .toLowerCase()
    .normalize('NFD')
    .replace(/[^a-z0-9 ]/g, '')
    .trim()
    .split(/\s+/)
    .filter((word) => word !== 'gmbh' && word !== 'co')
    .join('')
  return {
    name,
    contact,
    domain: `${domain}.example`,
    address: {
      line1,
      city,
      postal_code: postalCode,
      country,
      ...(state === undefined ? {} : { state }),
    },
  }
}

/** The scripted roles of the first eight customers (see `storyEvents`). */
const STORY: readonly Role[] = [
  // 0: pays every month on auto-pay; upgrades Pro → Team in month 6.
  scripted({ tier: 'pro', interval: 'month' }, { kind: 'reliable' }, { autoPay: true }),
  // 1: EUR, loyal Starter customer with a welcome discount; gets a goodwill credit.
  scripted({ tier: 'starter', interval: 'month', discountCode: 'WELCOME10' }, { kind: 'reliable' }),
  // 2: Team yearly with the founders' discount; renews once.
  scripted(
    { tier: 'team', interval: 'year', discountCode: 'FOUNDERS50' },
    { kind: 'reliable' },
    { autoPay: true },
  ),
  // 3: stops paying in month 10: the subscription goes past_due.
  scripted(
    { tier: 'starter', interval: 'month', discountCode: 'FOUNDERS50' },
    { kind: 'stops', fromStep: 10 },
  ),
  // 4: EUR Pro, cancels at once in month 7.
  scripted({ tier: 'pro', interval: 'month' }, { kind: 'reliable' }),
  // 5: cancels at the end of the period in month 9.
  scripted(
    { tier: 'starter', interval: 'month', discountCode: 'FOUNDERS50' },
    { kind: 'reliable' },
  ),
  // 6: misses month 5, pays it a month late (past_due, then active again).
  scripted(
    { tier: 'pro', interval: 'month', discountCode: 'SAVE5USD' },
    { kind: 'late_once', step: 5 },
  ),
  // 7: buys API credits only; abandons a checkout in month 2, signs up unpaid in month 12.
  scripted(null, { kind: 'reliable' }),
]

function scripted(
  plan: PlanChoice | null,
  habit: PaymentHabit,
  extra: { autoPay?: boolean } = {},
): Role {
  return {
    autoPay: extra.autoPay ?? false,
    startStep: 0,
    plan,
    habit,
    onboarding: false,
    topUpStep: null,
  }
}

function buildPersonas(count: number, random: () => number): Persona[] {
  const personas: Persona[] = []
  const emails = new Set<string>()
  for (let index = 0; index < count; index++) {
    const identity = identityOf(index, random, emails)
    const role = STORY[index] ?? randomRole(random, identity.currency)
    personas.push({ ...identity, ...role })
  }
  return personas
}

function identityOf(
  index: number,
  random: () => number,
  emails: Set<string>,
): Pick<Persona, 'name' | 'contact' | 'email' | 'address' | 'currency'> {
  const rostered = ROSTER[index]
  if (rostered) {
    const [first = 'billing'] = rostered.contact.toLowerCase().split(' ')
    const email = uniqueEmail(
      `${first.normalize('NFD').replace(/[^a-z]/g, '')}@${rostered.domain}`,
      emails,
    )
    return {
      name: rostered.name,
      contact: rostered.contact,
      email,
      address: rostered.address,
      currency: currencyFor(rostered.address.country),
    }
  }
  const first = pick(FIRST_NAMES, random)
  const last = pick(LAST_NAMES, random)
  const address = pick(CITIES, random)
  return {
    name: `${first} ${last}`,
    contact: `${first} ${last}`,
    email: uniqueEmail(`${first}.${last}@mail.example`.toLowerCase(), emails),
    address,
    currency: currencyFor(address.country),
  }
}

function uniqueEmail(wanted: string, taken: Set<string>): string {
  let email = wanted
  for (let n = 2; taken.has(email); n++) email = wanted.replace('@', `${n}@`)
  taken.add(email)
  return email
}

function currencyFor(country: string): DemoCurrency {
  return EURO_COUNTRIES.has(country) ? 'eur' : 'usd'
}

function randomRole(random: () => number, currency: DemoCurrency): Role {
  const startStep = Math.floor(random() * 10)
  const tierRoll = random()
  const tier: Tier = tierRoll < 0.5 ? 'starter' : tierRoll < 0.85 ? 'pro' : 'team'
  const interval: BillingInterval = random() < 0.15 ? 'year' : 'month'
  const discountCode = chooseSignupDiscount(random, startStep, currency)
  const habit: PaymentHabit =
    random() < 0.1
      ? { kind: 'stops', fromStep: startStep + 2 + Math.floor(random() * 6) }
      : { kind: 'random', lateChance: 0.1 }
  const topUpStep = random() < 0.3 ? startStep + 1 + Math.floor(random() * 3) : null
  return {
    autoPay: random() < 0.4,
    startStep,
    plan: { tier, interval, ...(discountCode && { discountCode }) },
    habit,
    onboarding: random() < 0.25,
    topUpStep: topUpStep !== null && topUpStep <= LAST_MONTH_STEP ? topUpStep : null,
  }
}

function chooseSignupDiscount(
  random: () => number,
  startStep: number,
  currency: DemoCurrency,
): string | undefined {
  const roll = random()
  if (roll < 0.2) return 'WELCOME10'
  if (roll < 0.3 && startStep === 0) return 'LAUNCH20'
  if (roll < 0.35 && currency === 'eur') return 'EURO15'
  return undefined
}

async function signUpCustomersOf(run: DemoRun, step: number): Promise<void> {
  const joining = run.personas.flatMap((persona, index) =>
    persona.startStep === step ? [index] : [],
  )
  for (const [slot, index] of joining.entries()) {
    atStep(run, step, 0.5 + (14 * slot) / joining.length)
    await signUp(run, index)
  }
}

async function signUp(run: DemoRun, index: number): Promise<void> {
  const persona = personaOf(run, index)
  const customer = await createCustomer(
    run.db,
    run.scope,
    {
      name: persona.name,
      email: persona.email,
      external_id: `demo_acct_${1001 + index}`,
      billing_address: persona.address,
      auto_pay: persona.autoPay,
      metadata: { contact: persona.contact, demo: 'true' },
    },
    run.clock,
  )
  run.customers.set(index, customer.id)
  if (persona.plan) {
    later(run, 15)
    const subscriptionId = await subscribe(run, index, persona.plan, persona.habit, { pay: true })
    run.planSubscriptions.set(index, subscriptionId)
  }
  if (persona.onboarding) {
    later(run, 60)
    await buyOnboarding(run, index)
  }
}

function personaOf(run: DemoRun, index: number): Persona {
  const persona = run.personas[index]
  if (!persona) throw new Error(`demo has no customer #${index}`)
  return persona
}

function customerIdOf(run: DemoRun, index: number): string {
  const id = run.customers.get(index)
  if (!id) throw new Error(`demo customer #${index} has not signed up yet`)
  return id
}

/** A few minutes later: keeps related actions in order on the timeline. */
function later(run: DemoRun, minutes: number): void {
  advanceTo(run, new Date(run.clock.now().getTime() + minutes * 60_000))
}

// ---------------------------------------------------------------------------
// Orders and payments

async function subscribe(
  run: DemoRun,
  index: number,
  plan: PlanChoice,
  habit: PaymentHabit,
  options: { pay: boolean },
): Promise<string> {
  const currency = personaOf(run, index).currency
  const price = catalogOf(run).plans[plan.tier][plan.interval][currency]
  const { order, invoice } = await placeOrder(run, {
    customer_id: customerIdOf(run, index),
    type: 'SUBSCRIPTION',
    price_id: price.id,
    ...(plan.discountCode && { discount_code: plan.discountCode }),
  })
  if (!order.subscription_id)
    throw new Error('a subscription order came back without its subscription')
  run.subscriptions.push({ id: order.subscription_id, habit })
  if (options.pay) {
    later(run, 5)
    await payInFull(run, invoice)
  }
  return order.subscription_id
}

async function buyOnboarding(run: DemoRun, index: number, discountCode?: string): Promise<void> {
  const currency = personaOf(run, index).currency
  const { invoice } = await placeOrder(run, {
    customer_id: customerIdOf(run, index),
    type: 'ONE_TIME_PRODUCT',
    price_id: catalogOf(run).onboarding[currency].id,
    ...(discountCode && { discount_code: discountCode }),
  })
  later(run, 5)
  await payInFull(run, invoice)
}

/** A credit top-up from a price (by its amount) or a custom amount; paid unless told otherwise. */
async function topUp(
  run: DemoRun,
  index: number,
  amount: string,
  options: { custom?: boolean; pay?: boolean } = {},
): Promise<void> {
  const currency = personaOf(run, index).currency
  const base = { customer_id: customerIdOf(run, index), type: 'CREDIT_TOP_UP' as const }
  const body: CreateOrderBody = options.custom
    ? { ...base, amount, currency }
    : { ...base, price_id: creditPrice(run, currency, amount).id }
  const { invoice } = await placeOrder(run, body)
  if (options.pay === false) return
  later(run, 5)
  await payInFull(run, invoice)
}

function creditPrice(run: DemoRun, currency: DemoCurrency, amount: string): Price {
  const prices = catalogOf(run).credits[currency]
  const price = prices.find((p) => formatCents(p.amount) === amount) ?? prices[0]
  if (!price) throw new Error(`demo catalog has no API credit price in ${currency}`)
  return price
}

function formatCents(amount: bigint): string {
  return `${amount / 100n}.${String(amount % 100n).padStart(2, '0')}`
}

async function placeOrder(run: DemoRun, body: CreateOrderBody) {
  const created = await createOrder(
    run.db,
    run.scope,
    { ...body, metadata: { demo: 'true' } },
    run.clock,
  )
  run.orderIds.add(created.order.id)
  run.invoiceIds.add(created.invoice.invoice.id)
  return { order: created.order, invoice: created.invoice.invoice }
}

/** Records money received for an invoice, as a payment rail's reconciliation would. */
async function pay(run: DemoRun, invoiceId: string, amount: bigint): Promise<Invoice> {
  const change = await inTransaction(run.db, (trx) =>
    applyInvoicePayment(trx, run.scope, invoiceId, amount, run.clock),
  )
  return change.invoice
}

async function payInFull(run: DemoRun, invoice: Invoice): Promise<void> {
  if (invoice.amount_remaining > 0n) await pay(run, invoice.id, invoice.amount_remaining)
}

// ---------------------------------------------------------------------------
// Renewals

/** Pays (or leaves unpaid) the renewal invoices issued at `since`, by each subscription's habit. */
async function payRenewals(run: DemoRun, step: number, since: Date): Promise<void> {
  await payDeferred(run, step)
  const issued = await renewalInvoicesSince(run, since)
  for (const subscription of run.subscriptions) {
    for (const invoice of issued.filter((i) => i.subscription_id === subscription.id)) {
      run.invoiceIds.add(invoice.id)
      if (invoice.payment_status !== 'PENDING' || invoice.amount_remaining === 0n) continue
      const decision = renewalDecision(subscription.habit, step, run.random)
      if (decision === 'now') await pay(run, invoice.id, invoice.amount_remaining)
      else if (decision === 'next_step')
        run.payLater.push({ invoiceId: invoice.id, step: step + 1 })
    }
  }
}

async function payDeferred(run: DemoRun, step: number): Promise<void> {
  const due = run.payLater.filter((p) => p.step <= step)
  run.payLater = run.payLater.filter((p) => p.step > step)
  for (const { invoiceId } of due) {
    const invoice = await invoiceById(run, invoiceId)
    if (invoice.invoice_status === 'FINALIZED' && invoice.amount_remaining > 0n)
      await pay(run, invoiceId, invoice.amount_remaining)
  }
}

function renewalDecision(
  habit: PaymentHabit,
  step: number,
  random: () => number,
): 'now' | 'next_step' | 'never' {
  const final = step === FINAL_STEP
  switch (habit.kind) {
    case 'reliable':
      return 'now'
    case 'late_once':
      return habit.step === step && !final ? 'next_step' : 'now'
    case 'stops':
      return step >= habit.fromStep ? 'never' : 'now'
    case 'random': {
      const roll = random()
      // At the end of the story, about half the newest invoices are still open.
      if (final) return roll < 0.5 ? 'now' : 'never'
      return roll < habit.lateChance ? 'next_step' : 'now'
    }
  }
}

async function renewalInvoicesSince(run: DemoRun, since: Date): Promise<Invoice[]> {
  const tracked = new Set(run.subscriptions.map((s) => s.id))
  const invoices = await allInvoices(run, { from: since })
  return invoices
    .filter(
      (i) =>
        i.billing_reason === 'subscription_cycle' &&
        i.subscription_id !== null &&
        tracked.has(i.subscription_id),
    )
    .sort((a, b) => (a.period_start?.getTime() ?? 0) - (b.period_start?.getTime() ?? 0))
}

async function invoiceById(run: DemoRun, invoiceId: string): Promise<Invoice> {
  const { invoice } = await getInvoice(run.db, adminAccess(run.scope), invoiceId)
  return invoice
}

// ---------------------------------------------------------------------------
// The scripted story

function storyEvents(run: DemoRun): StoryEvent[] {
  const events: StoryEvent[] = [
    ...onboardingAndCredits(),
    ...manualInvoices(),
    ...subscriptionChanges(),
    ...balanceAdjustments(),
    ...randomTopUps(run),
    ...dunningOutcomes(run),
  ]
  // Stable: events of the same day keep the order they were written in.
  return events.sort((a, b) => a.step - b.step || a.day - b.day)
}

function at(step: number, day: number, act: (run: DemoRun) => Promise<void>): StoryEvent {
  return { step, day, act }
}

function onboardingAndCredits(): StoryEvent[] {
  return [
    at(0, 22, (run) => buyOnboarding(run, 0, 'LAUNCH20')),
    at(0, 23, (run) => buyOnboarding(run, 2)),
    at(1, 22, (run) => topUp(run, 7, '50.00')),
    at(1, 24, (run) => buyOnboarding(run, 4, 'EURO15')),
    // Customer 7 starts a Pro checkout and never pays it; the invoice is voided.
    at(2, 22, async (run) => {
      const id = await subscribe(
        run,
        7,
        { tier: 'pro', interval: 'month' },
        { kind: 'reliable' },
        { pay: false },
      )
      run.notes.set('abandoned-subscription', id)
    }),
    at(2, 27, (run) => voidSubscriptionCheckout(run, 'abandoned-subscription')),
    at(3, 23, (run) => topUp(run, 7, '25.00', { custom: true })),
    at(4, 23, (run) => topUp(run, 1, '50.00')),
    at(5, 24, (run) => topUp(run, 7, '100.00')),
    at(11, 22, (run) => topUp(run, 7, '10.00', { pay: false })),
    // A new plan in the last month, not paid yet: incomplete.
    at(12, 22, async (run) => {
      await subscribe(
        run,
        7,
        { tier: 'starter', interval: 'month' },
        { kind: 'reliable' },
        { pay: false },
      )
    }),
  ]
}

function manualInvoices(): StoryEvent[] {
  return [
    at(1, 23, (run) =>
      issueInvoice(run, 'sso', 0, 'usd', [['Custom SSO integration', 1, '1200.00']]),
    ),
    at(1, 25, (run) => payNoted(run, 'sso')),
    at(2, 23, (run) =>
      issueInvoice(run, 'migration', 2, 'usd', [['Data migration (per workspace)', 2, '350.00']]),
    ),
    // Paid by bank transfer, 50.00 more than was due.
    at(2, 26, (run) => payNoted(run, 'migration', 5000n)),
    at(3, 24, (run) =>
      issueInvoice(run, 'workshop', 1, 'eur', [['Design review workshop', 1, '600.00']]),
    ),
    // Half now, the rest never arrives: stays PENDING with amount_paid > 0.
    at(3, 26, (run) => payNoted(run, 'workshop', undefined, 2n)),
    at(4, 22, (run) =>
      issueInvoice(run, 'support', 3, 'usd', [['Priority support add-on', 1, '150.00']]),
    ),
    at(4, 25, (run) => voidNoted(run, 'support')),
    at(5, 22, (run) =>
      issueInvoice(run, 'translation', 4, 'eur', [['Translation services (pages)', 3, '80.00']], {
        windowDays: 14,
      }),
    ),
    at(6, 23, (run) => uncollectibleNoted(run, 'translation')),
    at(6, 24, (run) =>
      issueInvoice(run, 'audit', 6, 'usd', [['Annual security audit', 1, '900.00']]),
    ),
    at(6, 25, (run) => payNoted(run, 'audit')),
    at(7, 24, (run) => refundNoted(run, 'audit', 20_000n)),
    at(9, 23, (run) =>
      issueInvoice(run, 'seats', 5, 'usd', [['Extra seats (prorated)', 4, '12.50']], {
        discountCode: 'SAVE5USD',
      }),
    ),
    at(9, 24, (run) => payNoted(run, 'seats')),
    at(12, 24, (run) =>
      issueInvoice(run, 'reporting', 0, 'usd', [['Custom reporting add-on', 1, '400.00']], {
        draft: true,
      }),
    ),
    at(12, 25, (run) =>
      issueInvoice(run, 'consulting', 2, 'usd', [['Consulting hours', 6, '150.00']], {
        draft: true,
      }),
    ),
    at(12, 26, (run) =>
      issueInvoice(run, 'overage', 1, 'eur', [
        ['API overage (calls above plan)', 2, '45.00'],
        ['Additional storage (GB)', 10, '0.90'],
      ]),
    ),
  ]
}

function subscriptionChanges(): StoryEvent[] {
  return [
    at(6, 22, (run) => changePlan(run, 0, 'team')),
    at(7, 22, (run) => cancelSubscriptionOf(run, 4, false)),
    at(9, 22, (run) => cancelSubscriptionOf(run, 5, true)),
    // Two months after customer 3 stopped paying, the oldest open invoice is written off.
    at(12, 23, (run) => writeOffOldestOpenInvoice(run, 3)),
  ]
}

function balanceAdjustments(): StoryEvent[] {
  return [
    at(3, 22, (run) => adjust(run, 1, '10.00', 'Goodwill credit for a service incident')),
    at(8, 22, (run) => adjust(run, 7, '-5.00', 'Correction: duplicate credit')),
    at(8, 23, (run) => adjust(run, 3, '15.00', 'Goodwill credit for a billing error')),
    at(10, 22, (run) => adjust(run, 2, '20.00', 'Referral reward')),
  ]
}

function randomTopUps(run: DemoRun): StoryEvent[] {
  return run.personas.flatMap((persona, index) => {
    const step = persona.topUpStep
    if (step === null) return []
    const amount = persona.currency === 'eur' ? '50.00' : pick(CREDIT_PRICES.usd, run.random)
    return [at(step, 26, (r) => topUp(r, index, amount))]
  })
}

/**
 * Customers (after the scripted eight) who stop paying are cancelled and written
 * off after their third unpaid month, unless the story ends first (then they stay past_due).
 */
function dunningOutcomes(run: DemoRun): StoryEvent[] {
  return run.personas.flatMap((persona, index) => {
    if (index < STORY.length || persona.habit.kind !== 'stops') return []
    const step = persona.habit.fromStep + 2
    if (step > LAST_MONTH_STEP) return []
    return [
      at(step, 23, async (r) => {
        await cancelSubscriptionOf(r, index, false)
        for (const invoice of await subscriptionInvoices(r, subscriptionOf(r, index), 'PENDING'))
          await markInvoiceUncollectible(r.db, r.scope, invoice.id, r.clock)
      }),
    ]
  })
}

type LineSpec = [description: string, quantity: number, unitAmount: string]

async function issueInvoice(
  run: DemoRun,
  note: string,
  index: number,
  currency: DemoCurrency,
  lines: LineSpec[],
  options: { draft?: boolean; windowDays?: number; discountCode?: string } = {},
): Promise<void> {
  const { invoice } = await createInvoice(
    run.db,
    run.scope,
    {
      customer_id: customerIdOf(run, index),
      currency,
      lines: lines.map(([description, quantity, unit_amount]) => ({
        description,
        quantity,
        unit_amount,
      })),
      payment_window_days: options.windowDays ?? 30,
      ...(options.discountCode && { discount_code: options.discountCode }),
      metadata: { demo: 'true' },
    },
    run.clock,
  )
  run.invoiceIds.add(invoice.id)
  run.notes.set(note, invoice.id)
  if (options.draft) return
  later(run, 30)
  await finalizeInvoice(run.db, run.scope, invoice.id, run.clock)
}

function noted(run: DemoRun, note: string): string {
  const id = run.notes.get(note)
  if (!id) throw new Error(`demo story step '${note}' has not happened yet`)
  return id
}

/** Pays what is left, plus `extra`, or only `1/divisor` of it. */
async function payNoted(run: DemoRun, note: string, extra = 0n, divisor = 1n): Promise<void> {
  const invoice = await invoiceById(run, noted(run, note))
  await pay(run, invoice.id, invoice.amount_remaining / divisor + extra)
}

async function voidNoted(run: DemoRun, note: string): Promise<void> {
  await voidInvoice(run.db, run.scope, noted(run, note), run.clock)
}

async function uncollectibleNoted(run: DemoRun, note: string): Promise<void> {
  await markInvoiceUncollectible(run.db, run.scope, noted(run, note), run.clock)
}

async function refundNoted(run: DemoRun, note: string, amount: bigint): Promise<void> {
  const invoiceId = noted(run, note)
  await inTransaction(run.db, (trx) =>
    applyInvoiceRefund(trx, run.scope, invoiceId, amount, run.clock),
  )
}

async function voidSubscriptionCheckout(run: DemoRun, note: string): Promise<void> {
  const [invoice] = await subscriptionInvoices(run, noted(run, note), 'PENDING')
  if (invoice) await voidInvoice(run.db, run.scope, invoice.id, run.clock)
}

function subscriptionOf(run: DemoRun, index: number): string {
  const id = run.planSubscriptions.get(index)
  if (!id) throw new Error(`demo customer #${index} has no plan subscription`)
  return id
}

async function changePlan(run: DemoRun, index: number, tier: Tier): Promise<void> {
  const currency = personaOf(run, index).currency
  await updateSubscriptionSettings(
    run.db,
    run.scope,
    subscriptionOf(run, index),
    { price_id: catalogOf(run).plans[tier].month[currency].id },
    run.clock,
  )
}

async function cancelSubscriptionOf(
  run: DemoRun,
  index: number,
  atPeriodEnd: boolean,
): Promise<void> {
  await cancelSubscription(run.db, run.scope, subscriptionOf(run, index), atPeriodEnd, run.clock)
}

async function writeOffOldestOpenInvoice(run: DemoRun, index: number): Promise<void> {
  const [oldest] = await subscriptionInvoices(run, subscriptionOf(run, index), 'PENDING')
  if (oldest) await markInvoiceUncollectible(run.db, run.scope, oldest.id, run.clock)
}

async function adjust(
  run: DemoRun,
  index: number,
  amount: string,
  description: string,
): Promise<void> {
  const currency = personaOf(run, index).currency
  await adjustBalance(
    run.db,
    run.scope,
    customerIdOf(run, index),
    { amount, currency, description },
    run.clock,
  )
}

/** A subscription's finalized invoices in one payment status, oldest first. */
async function subscriptionInvoices(
  run: DemoRun,
  subscriptionId: string,
  paymentStatus: InvoicePaymentStatus,
): Promise<Invoice[]> {
  const { items } = await listInvoices(
    run.db,
    adminAccess(run.scope),
    { subscriptionId, paymentStatus, invoiceStatus: 'FINALIZED' },
    firstPage('created_at', 1000),
  )
  return items.map((i) => i.invoice)
}

// ---------------------------------------------------------------------------
// Listing and the summary

function firstPage<F extends string>(field: F, limit = 1, created: TimeRange = {}): ListRequest<F> {
  return { page: { limit, offset: 0 }, sort: { field, direction: 'asc' }, created }
}

/** Every page of a list, oldest first. */
async function listAll<T, F extends string>(
  field: F,
  created: TimeRange,
  fetch: (request: ListRequest<F>) => Promise<{ items: T[]; total: number }>,
): Promise<T[]> {
  const out: T[] = []
  for (;;) {
    const request = firstPage(field, 1000, created)
    request.page.offset = out.length
    const { items, total } = await fetch(request)
    out.push(...items)
    if (items.length === 0 || out.length >= total) return out
  }
}

async function allInvoices(run: DemoRun, created: TimeRange): Promise<Invoice[]> {
  const rows = await listAll('created_at', created, (request) =>
    listInvoices(run.db, adminAccess(run.scope), {}, request),
  )
  return rows.map((row) => row.invoice)
}

async function summarize(run: DemoRun): Promise<DemoSummary> {
  const range = { from: run.start, to: run.now }
  const access = adminAccess(run.scope)
  const invoices = (await allInvoices(run, range)).filter((i) => run.invoiceIds.has(i.id))
  const orders = (
    await listAll('created_at', range, (request) => listOrders(run.db, access, {}, request))
  ).filter((o) => run.orderIds.has(o.id))
  const subscriptionIds = new Set(run.subscriptions.map((s) => s.id))
  const subscriptions = (
    await listAll('created_at', range, (request) => listSubscriptions(run.db, access, {}, request))
  ).filter((s) => subscriptionIds.has(s.subscription.id))

  const byInvoiceStatus = { DRAFT: 0, FINALIZED: 0, VOIDED: 0, UNCOLLECTIBLE: 0 }
  const byPaymentStatus = {
    PENDING: 0,
    PROCESSING: 0,
    SUCCEEDED: 0,
    OVERPAID: 0,
    FAILED: 0,
    PARTIALLY_REFUNDED: 0,
    REFUNDED: 0,
  }
  for (const invoice of invoices) {
    byInvoiceStatus[invoice.invoice_status] += 1
    byPaymentStatus[invoice.payment_status] += 1
  }
  const byType = { SUBSCRIPTION: 0, CREDIT_TOP_UP: 0, ONE_TIME_PRODUCT: 0 }
  const byOrderStatus = { PENDING: 0, FULFILLED: 0, CANCELLED: 0 }
  for (const order of orders) {
    byType[order.type] += 1
    byOrderStatus[order.status] += 1
  }
  const bySubscriptionStatus = { incomplete: 0, active: 0, past_due: 0, canceled: 0 }
  for (const { subscription } of subscriptions) bySubscriptionStatus[subscription.status] += 1

  return {
    environmentId: run.scope.environmentId,
    from: run.start,
    to: run.now,
    customers: run.customers.size,
    products: run.productCount,
    prices: run.priceCount,
    discounts: run.discountCount,
    orders: { total: orders.length, byType, byStatus: byOrderStatus },
    invoices: { total: invoices.length, byInvoiceStatus, byPaymentStatus },
    subscriptions: { total: subscriptions.length, byStatus: bySubscriptionStatus },
    balanceTransactions: await countBalanceTransactions(run),
    renewals: run.renewals,
  }
}

async function countBalanceTransactions(run: DemoRun): Promise<number> {
  let count = 0
  for (const customerId of run.customers.values()) {
    const { total } = await listTransactions(
      run.db,
      run.scope,
      customerId,
      {},
      firstPage('created_at'),
    )
    count += total
  }
  return count
}

// ---------------------------------------------------------------------------
// Deterministic randomness

/** mulberry32: a tiny seeded PRNG, so the demo tells the same story every run. */
function seededRandom(seed: number): () => number {
  let state = seed >>> 0
  return () => {
    state = (state + 0x6d2b79f5) >>> 0
    let t = state
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4_294_967_296
  }
}

function pick<T>(items: readonly T[], random: () => number): T {
  const item = items[Math.floor(random() * items.length)]
  if (item === undefined) throw new Error('pick from an empty list')
  return item
}
