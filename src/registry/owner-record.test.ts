// Unit tests of the owner record's parsing and building, without etcd.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_PREVIOUS, newOwnerRecord, parseOwnerRecord } from './owner-record.ts';

test('parseOwnerRecord reads a record and keeps only valid earlier lease ids', () => {
  const text = JSON.stringify({ ownerId: 'o1', leaseId: '123', ttl: 30, updatedAt: 't', previousLeaseIds: ['99', '0', 7, 'x', '100'] });
  assert.deepEqual(parseOwnerRecord(text, 'reader'), { ownerId: 'o1', leaseId: '123', ttl: 30, updatedAt: 't', previousLeaseIds: ['99', '100'] });
});

test('parseOwnerRecord fills what an older record lacks, and names no lease for a bad id', () => {
  assert.deepEqual(parseOwnerRecord('{"leaseId":"5"}', 'reader'), { ownerId: 'reader', leaseId: '5', ttl: 0, updatedAt: '', previousLeaseIds: [] });
  for (const leaseId of ['0', '012', '', 'abc', 5, undefined]) {
    assert.equal(parseOwnerRecord(JSON.stringify({ leaseId }), 'reader'), undefined, String(leaseId));
  }
  assert.equal(parseOwnerRecord('42', 'reader'), undefined);
});

test('parseOwnerRecord throws for text that is not a JSON object', () => {
  assert.throws(() => parseOwnerRecord('not json', 'reader'), SyntaxError);
  assert.throws(() => parseOwnerRecord('null', 'reader'), TypeError);
});

test('newOwnerRecord keeps the first MAX_PREVIOUS distinct earlier leases', () => {
  const previous = ['1', '2', '1', ...Array.from({ length: 10 }, (_, i) => String(10 + i))];
  const record = newOwnerRecord('o1', '50', 30, previous);
  assert.equal(record.leaseId, '50');
  assert.equal(record.ttl, 30);
  assert.deepEqual(record.previousLeaseIds, ['1', '2', '10', '11', '12', '13', '14', '15']);
  assert.equal(record.previousLeaseIds?.length, MAX_PREVIOUS);
  assert.ok(!Number.isNaN(Date.parse(record.updatedAt)));
});
