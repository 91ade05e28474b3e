import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { isOurs, NO_LEASE } from './ownership.ts';

describe('isOurs', () => {
  const ownership = { leaseId: '200', adoptableLeases: new Set(['100']) };
  it('our current lease is ours', () => assert.equal(isOurs('200', ownership), true));
  it('an adoptable lease of the same owner is ours (adoption: its keys get moved)', () => assert.equal(isOurs('100', ownership), true));
  it("another owner's lease is not", () => assert.equal(isOurs('300', ownership), false));
  it('no lease is never ours, even while we have none', () => {
    assert.equal(isOurs(NO_LEASE, ownership), false);
    assert.equal(isOurs(NO_LEASE, { leaseId: NO_LEASE, adoptableLeases: new Set() }), false);
    assert.equal(isOurs('', { leaseId: '', adoptableLeases: new Set() }), false);
  });
});
