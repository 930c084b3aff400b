import { describe, expect, test } from 'vitest'
import {
  amountRemaining,
  canTransitionInvoice,
  INVOICE_TRANSITIONS,
  paymentStatusFor,
} from '../../src/core/invoice-state.ts'
import { INVOICE_STATUSES } from '../../src/db/database.ts'

describe('invoice state machine', () => {
  const allowed = new Set(
    Object.entries(INVOICE_TRANSITIONS).flatMap(([from, tos]) => tos.map((to) => `${from}->${to}`)),
  )
  const pairs = INVOICE_STATUSES.flatMap((from) =>
    INVOICE_STATUSES.map((to) => [from, to] as const),
  )

  test.each(pairs)('%s -> %s', (from, to) => {
    expect(canTransitionInvoice(from, to)).toBe(allowed.has(`${from}->${to}`))
  })

  test('the table is exactly the documented one', () => {
    expect([...allowed].sort()).toEqual([
      'DRAFT->FINALIZED',
      'FINALIZED->UNCOLLECTIBLE',
      'FINALIZED->VOIDED',
      'UNCOLLECTIBLE->VOIDED',
    ])
  })
})

describe('payment status from amounts', () => {
  test.each([
    [1000n, 0n, 0n, false, 'PENDING', 'PENDING'],
    [1000n, 400n, 0n, false, 'PENDING', 'PENDING'],
    [1000n, 0n, 0n, false, 'PROCESSING', 'PROCESSING'],
    [1000n, 0n, 0n, false, 'FAILED', 'FAILED'],
    [1000n, 1000n, 0n, false, 'PENDING', 'SUCCEEDED'],
    [1000n, 1200n, 0n, false, 'PENDING', 'OVERPAID'],
    [0n, 0n, 0n, false, 'PENDING', 'SUCCEEDED'],
    [1000n, 1000n, 300n, true, 'SUCCEEDED', 'PARTIALLY_REFUNDED'],
    [1000n, 1000n, 1000n, true, 'PARTIALLY_REFUNDED', 'REFUNDED'],
    // Not yet paid in full: a refund is owed again, and what is kept pays it.
    [1000n, 400n, 400n, false, 'PENDING', 'PENDING'],
    [1000n, 1000n, 400n, false, 'PENDING', 'PENDING'],
    [1000n, 1400n, 400n, false, 'PENDING', 'SUCCEEDED'],
    [1000n, 1600n, 400n, false, 'PENDING', 'OVERPAID'],
    // Paid, then an overpayment's excess given back: it keeps what is due (it read
    // PARTIALLY_REFUNDED), or still more.
    [1000n, 1200n, 200n, true, 'OVERPAID', 'SUCCEEDED'],
    [1000n, 1500n, 200n, true, 'OVERPAID', 'OVERPAID'],
    [1000n, 1200n, 300n, true, 'SUCCEEDED', 'PARTIALLY_REFUNDED'],
  ] as const)(
    'due %s, paid %s, refunded %s, paid before %s, was %s → %s',
    (amountDue, amountPaid, amountRefunded, paidBefore, current, expected) => {
      expect(paymentStatusFor({ amountDue, amountPaid, amountRefunded, paidBefore }, current)).toBe(
        expected,
      )
    },
  )
})

describe('what an invoice still owes', () => {
  test.each([
    [1000n, 400n, 0n, false, 600n],
    [1000n, 400n, 400n, false, 1000n],
    [1000n, 1000n, 400n, false, 400n],
    [1000n, 1000n, 400n, true, 0n],
    [1000n, 1200n, 0n, false, 0n],
  ] as const)(
    'due %s, paid %s, refunded %s, paid before %s → %s',
    (amountDue, amountPaid, amountRefunded, paidBefore, expected) => {
      expect(amountRemaining({ amountDue, amountPaid, amountRefunded, paidBefore })).toBe(expected)
    },
  )
})
