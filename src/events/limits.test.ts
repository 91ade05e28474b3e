// The flood guards of the recorder on their own: dedupe window, token buckets, LRU bounds.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { DedupeWindow, KeyedTokenBuckets, TokenBucket } from './limits.ts';

test('DedupeWindow: a key is a duplicate within the window, new again after it or once forgotten', () => {
  const seen = new DedupeWindow(1000, 10);
  assert.equal(seen.isDuplicate('a', 0), false);
  seen.remember('a', 0);
  assert.equal(seen.isDuplicate('a', 999), true);
  assert.equal(seen.isDuplicate('a', 1000), false, 'expired');
  seen.remember('a', 1000);
  seen.forget('a');
  assert.equal(seen.isDuplicate('a', 1001), false, 'forgotten');
});

test('DedupeWindow: beyond maxKeys the oldest key is forgotten', () => {
  const seen = new DedupeWindow(1000, 2);
  for (const key of ['a', 'b', 'c']) seen.remember(key, 0);
  assert.deepEqual(['a', 'b', 'c'].map((key) => seen.isDuplicate(key, 1)), [false, true, true]);
});

test('TokenBucket: the burst at once, then one token per interval; the wait until the next', () => {
  const bucket = new TokenBucket(2, 100, 0);
  assert.deepEqual([bucket.take(0), bucket.take(0), bucket.take(0)], [true, true, false]);
  assert.equal(bucket.msUntilToken(), 100);
  assert.equal(bucket.take(40), false);
  assert.equal(bucket.msUntilToken(), 60);
  assert.equal(bucket.take(100), true);
  assert.deepEqual([bucket.take(10_000), bucket.take(10_000), bucket.take(10_000)], [true, true, false], 'refilled to capacity, not beyond');
});

test('KeyedTokenBuckets: one bucket per key; the least recently used key is forgotten (and starts full again)', () => {
  const buckets = new KeyedTokenBuckets(1, 1000, 2);
  assert.equal(buckets.take('a', 0), true);
  assert.equal(buckets.take('a', 0), false, "a's bucket is empty");
  assert.equal(buckets.take('b', 0), true, 'b has its own');
  assert.equal(buckets.take('a', 0), false, 'a used: b is now the least recently used');
  assert.equal(buckets.take('c', 0), true);
  assert.equal(buckets.take('a', 0), false, 'a kept');
  assert.equal(buckets.take('b', 0), true, 'b forgotten, full again');
});
