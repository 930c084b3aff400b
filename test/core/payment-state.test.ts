import { describe, expect, test } from 'vitest'
import { AppError } from '../../src/core/errors.ts'
import {
  assertTransition,
  CURRENT_STATES,
  checkTransition,
  currentStateOf,
  isSettled,
  isTerminal,
  PAYMENT_STATUSES,
  PAYMENT_TRANSITIONS,
  type PaymentStatus,
} from '../../src/core/payment-state.ts'

/**
 * The table of DESIGN.md ("Payment state machine"), written out again here so a
 * wrong entry in the source is caught rather than copied.
 */
const DESIGN_TABLE: Record<PaymentStatus, readonly PaymentStatus[]> = {
  INITIATED: ['PENDING', 'PROCESSING', 'RESERVED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'CANCELLED'],
  PENDING: ['PROCESSING', 'RESERVED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'CANCELLED'],
  PROCESSING: ['RESERVED', 'CAPTURED', 'SUCCEEDED', 'OVERPAID', 'FAILED', 'ON_RETRY'],
  RESERVED: ['CAPTURED', 'SUCCEEDED', 'CANCELLED', 'FAILED'],
  CAPTURED: ['SUCCEEDED', 'OVERPAID'],
  FAILED: ['ON_RETRY'],
  ON_RETRY: ['PROCESSING', 'FAILED', 'CANCELLED'],
  SUCCEEDED: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  OVERPAID: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  PENDING_REFUND: ['PARTIALLY_REFUNDED', 'REFUNDED', 'REFUND_FAILED'],
  PARTIALLY_REFUNDED: ['PENDING_REFUND', 'PARTIALLY_REFUNDED', 'REFUNDED'],
  REFUND_FAILED: ['PENDING_REFUND'],
  REFUNDED: [],
  CANCELLED: [],
}

/** DESIGN.md's `current_state` list, status by status. */
const DESIGN_CURRENT_STATE: Record<PaymentStatus, string> = {
  INITIATED: 'created',
  PENDING: 'pending',
  PROCESSING: 'processing',
  RESERVED: 'reserved',
  CAPTURED: 'captured',
  SUCCEEDED: 'succeeded',
  OVERPAID: 'succeeded',
  FAILED: 'failed',
  ON_RETRY: 'on_retry',
  CANCELLED: 'cancelled',
  PENDING_REFUND: 'pending_refund',
  PARTIALLY_REFUNDED: 'partial_refund',
  REFUNDED: 'refunded',
  REFUND_FAILED: 'refund_failed',
}

const ALL_STATUSES: readonly PaymentStatus[] = [
  'INITIATED',
  'PENDING',
  'PROCESSING',
  'RESERVED',
  'CAPTURED',
  'SUCCEEDED',
  'OVERPAID',
  'FAILED',
  'ON_RETRY',
  'CANCELLED',
  'PENDING_REFUND',
  'PARTIALLY_REFUNDED',
  'REFUNDED',
  'REFUND_FAILED',
]

const allowed = (from: PaymentStatus, to: PaymentStatus) => DESIGN_TABLE[from].includes(to)

const pairs = ALL_STATUSES.flatMap((from) =>
  ALL_STATUSES.map((to) => ({ from, to, allowed: allowed(from, to) })),
)

describe('payment statuses', () => {
  test('PAYMENT_STATUSES is exactly the fourteen statuses of the design', () => {
    expect([...PAYMENT_STATUSES].sort()).toEqual([...ALL_STATUSES].sort())
    expect(new Set(PAYMENT_STATUSES).size).toBe(PAYMENT_STATUSES.length)
  })

  test('the table has a row for every status and nothing else', () => {
    expect(Object.keys(PAYMENT_TRANSITIONS).sort()).toEqual([...ALL_STATUSES].sort())
  })

  test.each(ALL_STATUSES)('row %s lists exactly the moves of the design, once each', (from) => {
    expect([...PAYMENT_TRANSITIONS[from]].sort()).toEqual([...DESIGN_TABLE[from]].sort())
    expect(new Set(PAYMENT_TRANSITIONS[from]).size).toBe(PAYMENT_TRANSITIONS[from].length)
  })
})

describe('checkTransition over every (from, to) pair', () => {
  test('there are 196 pairs and the design allows 42 of them', () => {
    expect(pairs).toHaveLength(196)
    expect(pairs.filter((p) => p.allowed)).toHaveLength(42)
  })

  test.each(pairs)('$from → $to (allowed: $allowed)', ({ from, to, allowed: ok }) => {
    expect(PAYMENT_TRANSITIONS[from].includes(to)).toBe(ok)
    const check = checkTransition(from, to)
    if (ok) {
      expect(check).toEqual({ kind: 'apply' })
      expect(assertTransition(from, to, 'pay_test')).toBe('apply')
    } else if (from === to) {
      expect(check).toEqual({ kind: 'repeat' })
      expect(assertTransition(from, to, 'pay_test')).toBe('repeat')
    } else {
      expect(check.kind).toBe('illegal')
      if (check.kind === 'illegal') {
        expect(check.reason).toContain(from)
        expect(check.reason).toContain(to)
      }
      expect(() => assertTransition(from, to, 'pay_test')).toThrow(AppError)
    }
  })
})

describe('repeats, applies and refusals', () => {
  test.each(ALL_STATUSES.filter((s) => s !== 'PARTIALLY_REFUNDED'))(
    'reporting %s again is a repeat (a no-op), never an apply',
    (status) => {
      expect(checkTransition(status, status)).toEqual({ kind: 'repeat' })
    },
  )

  test('PARTIALLY_REFUNDED → PARTIALLY_REFUNDED is a real move: each further partial refund applies', () => {
    expect(checkTransition('PARTIALLY_REFUNDED', 'PARTIALLY_REFUNDED')).toEqual({ kind: 'apply' })
    expect(assertTransition('PARTIALLY_REFUNDED', 'PARTIALLY_REFUNDED', 'pay_1')).toBe('apply')
  })

  test.each([
    ['SUCCEEDED', 'PENDING'],
    ['SUCCEEDED', 'FAILED'],
    ['REFUNDED', 'SUCCEEDED'],
    ['CANCELLED', 'SUCCEEDED'],
    ['FAILED', 'SUCCEEDED'],
    ['FAILED', 'PROCESSING'],
    ['PROCESSING', 'PENDING'],
    ['CAPTURED', 'FAILED'],
    ['ON_RETRY', 'SUCCEEDED'],
    ['PENDING', 'CAPTURED'],
    ['INITIATED', 'REFUNDED'],
  ] as const)('a payment never moves backwards or skips: %s → %s is illegal', (from, to) => {
    expect(checkTransition(from, to).kind).toBe('illegal')
  })

  test('an illegal move throws invalid_state_transition with from, to and the payment id', () => {
    let thrown: unknown
    try {
      assertTransition('SUCCEEDED', 'PENDING', 'pay_abc')
    } catch (error) {
      thrown = error
    }
    expect(thrown).toBeInstanceOf(AppError)
    if (!(thrown instanceof AppError)) return
    expect(thrown.code).toBe('invalid_state_transition')
    expect(thrown.message).toContain('pay_abc')
    expect(thrown.details).toMatchObject({
      payment_id: 'pay_abc',
      from: 'SUCCEEDED',
      to: 'PENDING',
    })
  })

  test('only REFUNDED and CANCELLED are terminal', () => {
    const terminal = ALL_STATUSES.filter((s) => isTerminal(s))
    expect(terminal.sort()).toEqual(['CANCELLED', 'REFUNDED'])
  })

  test('settled (money received) statuses are the success and refund ones', () => {
    const settled = ALL_STATUSES.filter((s) => isSettled(s))
    expect(settled.sort()).toEqual(
      [
        'OVERPAID',
        'PARTIALLY_REFUNDED',
        'PENDING_REFUND',
        'REFUNDED',
        'REFUND_FAILED',
        'SUCCEEDED',
      ].sort(),
    )
  })
})

describe('current_state', () => {
  test.each(ALL_STATUSES)('%s maps to the design’s lowercase state', (status) => {
    expect(currentStateOf(status)).toBe(DESIGN_CURRENT_STATE[status])
    expect(CURRENT_STATES[status]).toBe(DESIGN_CURRENT_STATE[status])
  })

  test('OVERPAID shows as succeeded; INITIATED as created; PARTIALLY_REFUNDED as partial_refund', () => {
    expect(currentStateOf('OVERPAID')).toBe('succeeded')
    expect(currentStateOf('INITIATED')).toBe('created')
    expect(currentStateOf('PARTIALLY_REFUNDED')).toBe('partial_refund')
  })

  test('the thirteen states of the design are all used', () => {
    expect(new Set(ALL_STATUSES.map(currentStateOf))).toEqual(
      new Set([
        'created',
        'pending',
        'processing',
        'reserved',
        'captured',
        'succeeded',
        'failed',
        'on_retry',
        'cancelled',
        'pending_refund',
        'partial_refund',
        'refunded',
        'refund_failed',
      ]),
    )
  })
})
