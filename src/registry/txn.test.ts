// Unit tests of the registry's transactions without etcd: refusals, guards, batching, and the
// judgement of a failed transaction from its failure branch's reads.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { RangeRead, StoredKv } from './txn-wire.ts';
import type { ApplyResult, Change, ChangeAction } from '../types.ts';
import {
  batches,
  buildTxn,
  guardHolds,
  guardOf,
  judgeFailedTxn,
  MAX_TXN_BYTES,
  opOf,
  recordApplied,
  recordErrors,
  refusal,
  satisfied,
  toEntry,
  type Item,
  type ResultSlots,
} from './txn.ts';

function change(action: ChangeAction, key: string, expectedLease = '0', value = 'v'): Change {
  return { action, key, value, expectedLease, reason: 'test' };
}

function items(...changes: Change[]): Item[] {
  return changes.map((c, index) => ({ index, change: c }));
}

function kv(key: string, value: string, lease: string, modRevision = '7', createRevision = '5'): StoredKv {
  return { key: Buffer.from(key), value: Buffer.from(value), lease, mod_revision: modRevision, create_revision: createRevision };
}

/** A failure branch's reads: one range result per read key (absent when kv is undefined). */
function ranges(...kvs: (StoredKv | undefined)[]): RangeRead[] {
  return kvs.map((k) => ({ kvs: k === undefined ? [] : [k] }));
}

const byDirectory = (key: string): string => key.slice(0, key.indexOf('/', 1) + 1);

test('refusal: puts need a live lease, repairs and deletes a lease of this owner', () => {
  const owner = { ownerId: 'o1', mode: 'owner' as const, hasLease: true, ownsLease: (l: string) => l === '11' || l === '12' };
  assert.equal(refusal(change('register', '/a/k'), owner), undefined);
  assert.equal(refusal(change('repair', '/a/k', '12'), owner), undefined);
  assert.equal(refusal(change('deregister', '/a/k', '11'), owner), undefined);
  assert.equal(
    refusal(change('orphan-delete', '/a/k', '99'), owner),
    'refused: expected lease 99 is not a lease of owner o1',
  );
  const leaseless = { ...owner, mode: 'adopt-only' as const, hasLease: false };
  assert.equal(refusal(change('register', '/a/k'), leaseless), 'refused: no live data lease for owner o1 (mode adopt-only)');
  assert.equal(refusal(change('repair', '/a/k', '11'), leaseless), 'refused: no live data lease for owner o1 (mode adopt-only)');
  // Deletes of keys on an earlier lease of ours still work without a lease.
  assert.equal(refusal(change('deregister', '/a/k', '11'), leaseless), undefined);
});

test('guards: register wants the key absent, every other change the key on its expected lease', () => {
  assert.deepEqual(guardOf(change('register', '/a/k')), {
    key: Buffer.from('/a/k'),
    target: 'Create',
    result: 'Equal',
    create_revision: 0,
  });
  for (const action of ['repair', 'deregister', 'orphan-delete'] as const) {
    assert.deepEqual(guardOf(change(action, '/a/k', '42')), { key: Buffer.from('/a/k'), target: 'Lease', result: 'Equal', lease: '42' });
  }
  assert.deepEqual(opOf(change('repair', '/a/k', '42', 'new'), '50'), {
    request_put: { key: Buffer.from('/a/k'), value: Buffer.from('new'), lease: '50' },
  });
  assert.deepEqual(opOf(change('deregister', '/a/k', '42'), '50'), { request_delete_range: { key: Buffer.from('/a/k') } });
});

test('buildTxn without a fence: one guard, one operation and one read per change', () => {
  const txn = buildTxn(items(change('register', '/a/1', '0', 'x'), change('orphan-delete', '/a/2', '9')), '50', undefined);
  assert.equal(txn.compare.length, 2);
  assert.deepEqual(txn.compare[0], guardOf(change('register', '/a/1')));
  assert.deepEqual(txn.compare[1], guardOf(change('orphan-delete', '/a/2', '9')));
  assert.deepEqual(txn.success, [
    { request_put: { key: Buffer.from('/a/1'), value: Buffer.from('x'), lease: '50' } },
    { request_delete_range: { key: Buffer.from('/a/2') } },
  ]);
  assert.deepEqual(txn.failure, [{ request_range: { key: Buffer.from('/a/1') } }, { request_range: { key: Buffer.from('/a/2') } }]);
});

test('buildTxn with a fence: the fence is compared and read first', () => {
  const txn = buildTxn(items(change('repair', '/a/1', '9')), '50', { key: '/election/x', createRevision: '77' });
  assert.deepEqual(txn.compare[0], { key: Buffer.from('/election/x'), target: 'Create', result: 'Equal', create_revision: '77' });
  assert.deepEqual(txn.compare[1], guardOf(change('repair', '/a/1', '9')));
  assert.deepEqual(txn.failure, [{ request_range: { key: Buffer.from('/election/x') } }, { request_range: { key: Buffer.from('/a/1') } }]);
  assert.equal(txn.success.length, 1);
});

test('batches: at most maxOps changes plus markers, fewer with reserved ops', () => {
  // Ten deletes: no markers, so maxOps changes per transaction (minus the fence's op).
  const deletes = items(...Array.from({ length: 10 }, (_, i) => change('deregister', `/a/${i}`, '9')));
  const noDirs = { directoryOf: byDirectory };
  assert.deepEqual(batches(deletes, { maxOps: 4, reservedOps: 0, ...noDirs }).map((b) => b.length), [4, 4, 2]);
  assert.deepEqual(batches(deletes, { maxOps: 4, reservedOps: 1, ...noDirs }).map((b) => b.length), [3, 3, 3, 1]);
  // Puts into one directory: one marker op joins the first put.
  const puts = items(...Array.from({ length: 6 }, (_, i) => change('register', `/a/${i}`)));
  assert.deepEqual(batches(puts, { maxOps: 4, reservedOps: 0, ...noDirs }).map((b) => b.length), [3, 3]);
  // Puts into a new directory each: every put brings its marker.
  const spread = items(...Array.from({ length: 6 }, (_, i) => change('register', `/d${i}/k`)));
  assert.deepEqual(batches(spread, { maxOps: 4, reservedOps: 0, ...noDirs }).map((b) => b.length), [2, 2, 2]);
  assert.deepEqual(batches([], { maxOps: 4, reservedOps: 0, ...noDirs }), []);
});

test('batches: the same key twice never shares a transaction, and order is kept', () => {
  const list = items(change('register', '/a/k'), change('deregister', '/a/j', '9'), change('repair', '/a/k', '50'));
  const out = batches(list, { maxOps: 100, reservedOps: 0, directoryOf: byDirectory });
  assert.deepEqual(out.map((b) => b.map((it) => it.index)), [[0, 1], [2]]);
});

test('batches: a transaction stays under MAX_TXN_BYTES', () => {
  const big = 'x'.repeat(Math.floor(MAX_TXN_BYTES / 3));
  const list = items(...Array.from({ length: 4 }, (_, i) => change('register', `/a/${i}`, '0', big)));
  const out = batches(list, { maxOps: 100, reservedOps: 0, directoryOf: byDirectory });
  assert.deepEqual(out.map((b) => b.length), [2, 2]);
});

test('toEntry decodes key and value as UTF-8, with lease and mod revision', () => {
  assert.deepEqual(toEntry(kv('/a/k', 'v1', '123', '88')), { key: '/a/k', value: 'v1', lease: '123', modRevision: '88' });
  assert.deepEqual(toEntry(kv('/a/é', 'ü', '0')), { key: '/a/é', value: 'ü', lease: '0', modRevision: '7' });
});

test('guardHolds and satisfied judge a key against what was read', () => {
  const entry = { key: '/a/k', value: 'v', lease: '50', modRevision: '3' };
  assert.equal(guardHolds(change('register', '/a/k'), undefined), true);
  assert.equal(guardHolds(change('register', '/a/k'), entry), false);
  assert.equal(guardHolds(change('repair', '/a/k', '50'), entry), true);
  assert.equal(guardHolds(change('repair', '/a/k', '49'), entry), false);
  assert.equal(guardHolds(change('deregister', '/a/k', '0'), undefined), true);
  assert.equal(satisfied(change('register', '/a/k', '0', 'v'), entry, '50'), true);
  assert.equal(satisfied(change('register', '/a/k', '0', 'v'), entry, '51'), false);
  assert.equal(satisfied(change('register', '/a/k', '0', 'w'), entry, '50'), false);
  assert.equal(satisfied(change('deregister', '/a/k', '50'), undefined, '50'), true);
  assert.equal(satisfied(change('deregister', '/a/k', '50'), entry, '50'), false);
});

test('judgeFailedTxn: conflicts are settled, changes whose guard holds are retried', () => {
  const list = items(change('register', '/a/1'), change('repair', '/a/2', '50', 'new'), change('deregister', '/a/3', '50'));
  const verdict = judgeFailedTxn(list, undefined, ranges(kv('/a/1', 'theirs', '77'), kv('/a/2', 'old', '50'), undefined), false, '50');
  assert.equal(verdict.fenceLost, undefined);
  assert.deepEqual(verdict.retry.map((it) => it.index), [1]);
  assert.deepEqual(verdict.settled, [
    { index: 0, result: { change: list[0]!.change, outcome: 'conflict', current: { key: '/a/1', value: 'theirs', lease: '77', modRevision: '7' } } },
    { index: 2, result: { change: list[2]!.change, outcome: 'conflict', current: undefined } },
  ]);
});

test('judgeFailedTxn: after an ambiguous attempt, a key already as wanted counts as applied', () => {
  const list = items(change('register', '/a/1', '0', 'mine'), change('deregister', '/a/2', '50'));
  const verdict = judgeFailedTxn(list, undefined, ranges(kv('/a/1', 'mine', '50', '91'), undefined), true, '50');
  assert.deepEqual(verdict.retry, []);
  assert.deepEqual(verdict.settled, [
    { index: 0, result: { change: list[0]!.change, outcome: 'ok', current: { key: '/a/1', value: 'mine', lease: '50', modRevision: '91' }, revision: '91' } },
    { index: 1, result: { change: list[1]!.change, outcome: 'ok', current: undefined } },
  ]);
  // Not ambiguous: the same reads are conflicts.
  const plain = judgeFailedTxn(list, undefined, ranges(kv('/a/1', 'mine', '50', '91'), undefined), false, '50');
  assert.deepEqual(plain.settled.map((s) => s.result.outcome), ['conflict', 'conflict']);
});

test('judgeFailedTxn: a fence absent or re-created is lost, and nothing is settled', () => {
  const fence = { key: '/election/x', createRevision: '77' };
  const list = items(change('register', '/a/1'));
  const absent = judgeFailedTxn(list, fence, ranges(undefined, undefined), false, '50');
  assert.equal(absent.fenceLost, 'fence lost: /election/x create revision is absent, expected 77');
  assert.deepEqual([absent.retry, absent.settled], [[], []]);
  const recreated = judgeFailedTxn(list, fence, ranges(kv('/election/x', 'id', '3', '90', '90'), undefined), false, '50');
  assert.equal(recreated.fenceLost, 'fence lost: /election/x create revision is 90, expected 77');
  // The fence holds: the changes are judged from the reads after it.
  const held = judgeFailedTxn(list, fence, ranges(kv('/election/x', 'id', '3', '90', '77'), kv('/a/1', 'v', '8')), false, '50');
  assert.equal(held.fenceLost, undefined);
  assert.deepEqual(held.settled.map((s) => [s.index, s.result.outcome]), [[0, 'conflict']]);
});

test('recordApplied and recordErrors fill the caller\'s slots by index', () => {
  const list = items(change('register', '/a/1', '0', 'x'), change('deregister', '/a/2', '50'));
  const slots: ResultSlots = new Array<ApplyResult | undefined>(3);
  recordApplied(slots, list, '50', '100');
  assert.deepEqual(slots[0], { change: list[0]!.change, outcome: 'ok', revision: '100', current: { key: '/a/1', value: 'x', lease: '50', modRevision: '100' } });
  assert.deepEqual(slots[1], { change: list[1]!.change, outcome: 'ok', revision: '100', current: undefined });
  assert.equal(slots[2], undefined);
  recordErrors(slots, [{ index: 2, change: change('register', '/a/3') }], 'boom');
  assert.deepEqual(slots[2], { change: change('register', '/a/3'), outcome: 'error', error: 'boom' });
});
