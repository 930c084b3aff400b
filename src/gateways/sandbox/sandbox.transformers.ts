import type { Decline } from '../gateway.ts'

/** How a sandbox test card behaves, by number (the same numbers Stripe's test mode uses). */
export type SandboxCardBehaviour =
  | { kind: 'succeeds' }
  | { kind: 'declines'; decline: Decline }
  | { kind: 'requires_authentication' }

export const SANDBOX_TEST_CARDS: Readonly<Record<string, SandboxCardBehaviour>> = {
  '4242424242424242': { kind: 'succeeds' },
  '4000000000000002': {
    kind: 'declines',
    decline: {
      code: 'card_declined',
      message: 'Your card was declined.',
      declineCode: 'generic_decline',
    },
  },
  '4000000000009995': {
    kind: 'declines',
    decline: {
      code: 'insufficient_funds',
      message: 'Your card has insufficient funds.',
      declineCode: 'insufficient_funds',
    },
  },
  '4000000000009987': {
    kind: 'declines',
    decline: {
      code: 'card_declined',
      message: 'Your card was declined.',
      declineCode: 'lost_card',
    },
  },
  '4000000000000069': {
    kind: 'declines',
    decline: {
      code: 'expired_card',
      message: 'Your card has expired.',
      declineCode: 'expired_card',
    },
  },
  '4000002760003184': { kind: 'requires_authentication' },
}

export function normalizeCardNumber(input: string): string {
  return input.replace(/[\s-]/g, '')
}

/** Luhn check, so a typo is refused on the page like a real checkout would. */
export function isValidCardNumber(number: string): boolean {
  if (!/^\d{12,19}$/.test(number)) return false
  let sum = 0
  for (let i = 0; i < number.length; i++) {
    let digit = Number(number[number.length - 1 - i])
    if (i % 2 === 1) {
      digit *= 2
      if (digit > 9) digit -= 9
    }
    sum += digit
  }
  return sum % 10 === 0
}

/** Any valid number not in the table behaves like 4242: it succeeds. */
export function behaviourOf(number: string): SandboxCardBehaviour {
  return SANDBOX_TEST_CARDS[number] ?? { kind: 'succeeds' }
}

export function brandOf(number: string): string {
  if (number.startsWith('4')) return 'visa'
  if (/^5[1-5]/.test(number) || /^2[2-7]/.test(number)) return 'mastercard'
  if (/^3[47]/.test(number)) return 'amex'
  return 'unknown'
}

/** Crypto outcomes the sandbox's crypto page offers, as a BitPay-like invoice would move. */
export const SANDBOX_CRYPTO_ACTIONS = [
  'pay',
  'confirm',
  'pay_and_confirm',
  'underpay',
  'overpay',
  'expire',
] as const
export type SandboxCryptoAction = (typeof SANDBOX_CRYPTO_ACTIONS)[number]
