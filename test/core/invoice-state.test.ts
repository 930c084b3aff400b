import { describe, expect, test } from 'vitest'
import {
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
    [1000n, 0n, 0n, 'PENDING', 'PENDING'],
    [1000n, 400n, 0n, 'PENDING', 'PENDING'],
    [1000n, 0n, 0n, 'PROCESSING', 'PROCESSING'],
    [1000n, 0n, 0n, 'FAILED', 'FAILED'],
    [1000n, 1000n, 0n, 'PENDING', 'SUCCEEDED'],
    [1000n, 1200n, 0n, 'PENDING', 'OVERPAID'],
    [0n, 0n, 0n, 'PENDING', 'SUCCEEDED'],
    [1000n, 1000n, 300n, 'SUCCEEDED', 'PARTIALLY_REFUNDED'],
    [1000n, 1000n, 1000n, 'PARTIALLY_REFUNDED', 'REFUNDED'],
  ] as const)(
    'due %s, paid %s, refunded %s, was %s → %s',
    (amountDue, amountPaid, amountRefunded, current, expected) => {
      expect(paymentStatusFor({ amountDue, amountPaid, amountRefunded }, current)).toBe(expected)
    },
  )
})
