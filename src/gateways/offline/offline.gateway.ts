import type { Gateway } from '../gateway.ts'

/**
 * Money received outside any gateway (bank transfer, cash, a cheque): recorded as
 * received when processed; a refund is recorded too (paid back outside Payrail).
 */
export const offlineGateway: Gateway = {
  name: 'offline',
  capabilities: {
    hostedCheckout: false,
    savedMethodCharge: false,
    refund: true,
    statusSync: false,
    webhookVerification: false,
    methodTypes: ['OFFLINE'],
    internal: true,
    withdrawsPages: false,
    paysAfterFailure: false,
  },
  async settleInternal() {
    return { ok: true }
  },
  async refundInternal() {
    // Nothing moves inside Payrail: the refund record is the record of money paid back offline.
  },
}
