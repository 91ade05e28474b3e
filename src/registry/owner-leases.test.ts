// Unit tests of the keeper's lease bookkeeping (current, adoptable, grace), without etcd.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { MAX_ADOPTABLE, OwnerLeases } from './owner-leases.ts';

test('the current and the adoptable leases are ours; "0" and others never are', () => {
  const leases = new OwnerLeases(30);
  assert.equal(leases.owned('0'), false);
  leases.switchTo('50');
  leases.addAdoptable(['40', '41']);
  assert.deepEqual(['50', '40', '41', '0', '', '99'].map((l) => leases.owned(l)), [true, true, true, false, false, false]);
  // Switching to an adoptable lease makes it current, no longer adoptable.
  leases.switchTo('41');
  assert.deepEqual([...leases.adoptable()], ['40']);
  assert.equal(leases.current, '41');
});

test('adoptable leases: the current one is skipped, re-added ones become newest, the oldest go first', () => {
  const leases = new OwnerLeases(30);
  leases.switchTo('50');
  leases.addAdoptable(['1', '50', '2', '1']);
  assert.deepEqual(leases.adoptableNewestFirst(), ['1', '2']);
  leases.addAdoptable(Array.from({ length: MAX_ADOPTABLE }, (_, i) => String(100 + i)));
  assert.equal(leases.adoptable().size, MAX_ADOPTABLE);
  assert.equal(leases.owned('1'), false);
  leases.resetAdoptable(['7']);
  assert.deepEqual([...leases.adoptable()], ['7']);
});

test('leases in grace are renewed until their grace is over or etcd says they are gone', () => {
  const leases = new OwnerLeases(30);
  leases.switchTo('50');
  leases.startGrace('40', 1_000); // until 1_000 + max(60 s, 3 × 30 s) = 91_000
  leases.startGrace('41', 1_000);
  assert.deepEqual(leases.toRenew(91_000), ['50', '40', '41']);
  leases.endGrace('41');
  assert.deepEqual(leases.keptAlive(), ['50', '40']);
  assert.deepEqual(leases.toRenew(91_001), ['50']);
});

test('keepalive timing suits the shortest TTL kept alive, and forgets it once that lease is dropped', () => {
  const leases = new OwnerLeases(30);
  assert.equal(leases.effectiveTtlMs(), 30_000);
  leases.noteGranted('40', 60); // longer than ours: ignored
  leases.noteGranted('41', 10);
  leases.switchTo('41');
  assert.equal(leases.effectiveTtlMs(), 10_000);
  leases.switchTo('50');
  leases.startGrace('41', 0);
  assert.equal(leases.effectiveTtlMs(), 10_000);
  leases.toRenew(Number.MAX_SAFE_INTEGER); // the grace is over: 41 is no longer kept alive
  assert.equal(leases.effectiveTtlMs(), 30_000);
  leases.startGrace('41', Number.MAX_SAFE_INTEGER / 2);
  assert.equal(leases.effectiveTtlMs(), 30_000);
});
