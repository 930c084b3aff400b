/**
 * Card numbers from Checkout.com's sandbox test cards
 * (https://www.checkout.com/docs/testing/test-cards) and the outcome the emulator gives
 * them. `4000000000000002` is the emulator's own: Checkout.com documents no card for
 * 20005 “Declined - Do Not Honour”.
 */
export const CHECKOUT_TEST_CARDS = {
  '4242424242424242': { scheme: 'Visa', decline: null },
  '4543474002249996': { scheme: 'Visa', decline: null },
  '5436031030606378': { scheme: 'Mastercard', decline: null },
  '345678901234564': { scheme: 'Amex', decline: null },
  '4544249167673670': {
    scheme: 'Visa',
    decline: { code: '20051', summary: 'Insufficient Funds' },
  },
  '4724117215951699': { scheme: 'Visa', decline: { code: '20054', summary: 'Expired Card' } },
  '4485381577182090': {
    scheme: 'Visa',
    decline: { code: '20014', summary: 'Invalid Card Number' },
  },
  '4897453568485113': { scheme: 'Visa', decline: { code: '20059', summary: 'Suspected Fraud' } },
  '4818924250131070': { scheme: 'Visa', decline: { code: '20062', summary: 'Restricted Card' } },
  '4000000000000002': {
    scheme: 'Visa',
    decline: { code: '20005', summary: 'Declined - Do Not Honour' },
  },
} as const

export type CheckoutTestCard = keyof typeof CHECKOUT_TEST_CARDS

/** The response of a refund the acquirer declines after it was accepted (`declineRefundNext`). */
export const REFUND_DECLINED = { code: '20005', summary: 'Declined - Do Not Honour' } as const

export interface CardDecline {
  code: string
  summary: string
}

export interface CardOutcome {
  scheme: string
  decline: CardDecline | null
}

export const APPROVED_RESPONSE = { code: '10000', summary: 'Approved' } as const

export function isTestCard(number: string): number is CheckoutTestCard {
  return Object.hasOwn(CHECKOUT_TEST_CARDS, number)
}

/** A listed card's outcome; any other Luhn-valid number is approved; null: not a card number. */
export function cardOutcome(number: string): CardOutcome | null {
  if (isTestCard(number)) return CHECKOUT_TEST_CARDS[number]
  if (!/^\d{12,19}$/.test(number) || !passesLuhn(number)) return null
  return { scheme: schemeOf(number), decline: null }
}

function schemeOf(number: string): string {
  if (number.startsWith('4')) return 'Visa'
  if (/^(5[1-5]|2[2-7])/.test(number)) return 'Mastercard'
  if (/^3[47]/.test(number)) return 'Amex'
  return 'Unknown'
}

function passesLuhn(number: string): boolean {
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
