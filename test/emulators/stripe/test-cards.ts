import { createHash } from 'node:crypto'

/**
 * Stripe's test PaymentMethod aliases (https://docs.stripe.com/testing#cards), each with the
 * card it stands for and what happens when it is charged. Passing an alias wherever a
 * PaymentMethod id goes creates a new `pm_…` for that card, as Stripe does.
 */
export const TEST_CARD_ALIASES = [
  'pm_card_visa',
  'pm_card_visa_debit',
  'pm_card_mastercard',
  'pm_card_amex',
  'pm_card_visa_chargeDeclined',
  'pm_card_chargeDeclined',
  'pm_card_chargeDeclinedInsufficientFunds',
  'pm_card_chargeDeclinedLostCard',
  'pm_card_chargeDeclinedStolenCard',
  'pm_card_chargeDeclinedExpiredCard',
  'pm_card_chargeDeclinedIncorrectCvc',
  'pm_card_chargeDeclinedProcessingError',
  'pm_card_chargeDeclinedFraudulent',
  'pm_card_chargeCustomerFail',
  'pm_card_authenticationRequired',
] as const
export type TestCardAlias = (typeof TEST_CARD_ALIASES)[number]

export const CARD_BRANDS = ['visa', 'mastercard', 'amex'] as const
export type CardBrand = (typeof CARD_BRANDS)[number]

/** A decline as Stripe reports it: `code` / `decline_code` / `message` (and sometimes `param`). */
export interface CardDecline {
  code: string
  declineCode: string
  message: string
  param?: string
}

export type CardOutcome =
  | { kind: 'succeeds' }
  | { kind: 'declines'; decline: CardDecline }
  /** 3D Secure on every payment: on-session → `requires_action`; off-session → declined. */
  | { kind: 'requires_authentication' }

export interface TestCard {
  number: string
  brand: CardBrand
  funding: 'credit' | 'debit'
  country: string
  outcome: CardOutcome
}

const GENERIC_DECLINE: CardDecline = {
  code: 'card_declined',
  declineCode: 'generic_decline',
  message: 'Your card was declined.',
}

/** Off-session payment on a card whose issuer demands 3D Secure. */
export const AUTHENTICATION_REQUIRED: CardDecline = {
  code: 'authentication_required',
  declineCode: 'authentication_required',
  message: 'Your card was declined. This transaction requires authentication.',
}

function declines(decline: CardDecline): CardOutcome {
  return { kind: 'declines', decline }
}

const SUCCEEDS: CardOutcome = { kind: 'succeeds' }

function visa(number: string, outcome: CardOutcome): TestCard {
  return { number, brand: 'visa', funding: 'credit', country: 'US', outcome }
}

export const TEST_CARDS: Readonly<Record<TestCardAlias, TestCard>> = {
  pm_card_visa: visa('4242424242424242', SUCCEEDS),
  pm_card_visa_debit: { ...visa('4000056655665556', SUCCEEDS), funding: 'debit' },
  pm_card_mastercard: { ...visa('5555555555554444', SUCCEEDS), brand: 'mastercard' },
  pm_card_amex: { ...visa('378282246310005', SUCCEEDS), brand: 'amex' },
  pm_card_visa_chargeDeclined: visa('4000000000000002', declines(GENERIC_DECLINE)),
  pm_card_chargeDeclined: visa('4000000000000002', declines(GENERIC_DECLINE)),
  pm_card_chargeDeclinedInsufficientFunds: visa(
    '4000000000009995',
    declines({
      code: 'card_declined',
      declineCode: 'insufficient_funds',
      message: 'Your card has insufficient funds.',
    }),
  ),
  pm_card_chargeDeclinedLostCard: visa(
    '4000000000009987',
    declines({ ...GENERIC_DECLINE, declineCode: 'lost_card' }),
  ),
  pm_card_chargeDeclinedStolenCard: visa(
    '4000000000009979',
    declines({ ...GENERIC_DECLINE, declineCode: 'stolen_card' }),
  ),
  pm_card_chargeDeclinedExpiredCard: visa(
    '4000000000000069',
    declines({
      code: 'expired_card',
      declineCode: 'expired_card',
      message: 'Your card has expired.',
      param: 'exp_month',
    }),
  ),
  pm_card_chargeDeclinedIncorrectCvc: visa(
    '4000000000000127',
    declines({
      code: 'incorrect_cvc',
      declineCode: 'incorrect_cvc',
      message: "Your card's security code is incorrect.",
      param: 'cvc',
    }),
  ),
  pm_card_chargeDeclinedProcessingError: visa(
    '4000000000000119',
    declines({
      code: 'processing_error',
      declineCode: 'processing_error',
      message: 'An error occurred while processing your card. Try again in a little bit.',
    }),
  ),
  pm_card_chargeDeclinedFraudulent: visa(
    '4000000000000019',
    declines({ ...GENERIC_DECLINE, declineCode: 'fraudulent' }),
  ),
  pm_card_chargeCustomerFail: visa('4000000000000341', declines(GENERIC_DECLINE)),
  pm_card_authenticationRequired: visa('4000002760003184', { kind: 'requires_authentication' }),
}

export function isTestCardAlias(value: string): value is TestCardAlias {
  return TEST_CARD_ALIASES.some((alias) => alias === value)
}

export function lastFour(card: TestCard): string {
  return card.number.slice(-4)
}

/** Stripe's `display_brand`: how the brand is shown to people. */
export function displayBrand(brand: CardBrand): string {
  return brand === 'amex' ? 'american_express' : brand
}

/** Same card number → same fingerprint, as Stripe derives it per account. */
export function fingerprint(card: TestCard): string {
  return createHash('sha256')
    .update(card.number)
    .digest('base64')
    .replace(/[^a-zA-Z0-9]/g, '')
    .slice(0, 16)
}
