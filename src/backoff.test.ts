// The backoff every retry loop shares (the sources' list/watch loop, start-up retries).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { backoffDelay } from './backoff.ts';

test('backoffDelay: equal jitter, doubling, capped', () => {
  const o = { baseMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(1, o.baseMs, o.maxMs, () => 0), 50);
  assert.equal(backoffDelay(1, o.baseMs, o.maxMs, () => 0.999999), 100);
  assert.equal(backoffDelay(2, o.baseMs, o.maxMs, () => 0), 100);
  assert.equal(backoffDelay(3, o.baseMs, o.maxMs, () => 0), 200);
  assert.equal(backoffDelay(10, o.baseMs, o.maxMs, () => 0), 500);
  assert.equal(backoffDelay(1000, o.baseMs, o.maxMs, () => 1), 1000);
});
