// Property-based tests (fast-check) of the plan's ownership and convergence guarantees.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { isDelete, plan } from './plan.ts';
import type { PlanInput } from './plan.ts';
import type { CurrentEntry, DesiredEntry, Policy } from '../types.ts';

const OURS = '100';
const ADOPTABLE = ['90', '91'];
const leaseArb = fc.constantFrom(OURS, '90', '91', '0', '555', '7');
const keyArb = fc.constantFrom(...Array.from({ length: 16 }, (_, i) => `/s_E/10.0.0.${String(i)}-86`));
const valueArb = fc.constantFrom('a', 'b', 'c');

const inputArb = fc
  .record({
    desired: fc.uniqueArray(fc.tuple(keyArb, valueArb, fc.constantFrom('u1', 'u2')), { selector: (t) => t[0], maxLength: 16 }),
    current: fc.uniqueArray(fc.tuple(keyArb, valueArb, leaseArb), { selector: (t) => t[0], maxLength: 16 }),
    claimedKeys: fc.uniqueArray(keyArb, { maxLength: 16 }),
    policy: fc.constantFrom<Policy>('sync', 'upsert-only'),
    scope: fc.option(fc.uniqueArray(keyArb, { maxLength: 16 }), { nil: undefined }),
  })
  .map(({ desired, current, claimedKeys, policy, scope }): PlanInput => {
    const claimed = new Set(claimedKeys);
    return {
      desired: new Map(desired.map(([key, value, uid]): [string, DesiredEntry] => [key, { key, value, pod: { namespace: 'ns', name: uid, uid } }])),
      current: new Map(current.map(([key, value, lease]): [string, CurrentEntry] => [key, { key, value, lease, modRevision: '1' }])),
      claimed: (k) => (claimed.has(k) ? { namespace: 'ns', name: 'gone', uid: 'u9' } : undefined),
      leaseId: OURS,
      adoptableLeases: new Set(ADOPTABLE),
      policy,
      ...(scope === undefined ? {} : { scope: new Set(scope) }),
    };
  });

const ours = (lease: string | undefined): boolean => lease === OURS || ADOPTABLE.includes(lease ?? '');

describe('plan properties', () => {
  it('never touches foreign keys, fences on the current lease, converges in one round', () => {
    fc.assert(
      fc.property(inputArb, (input) => {
        const p = plan(input);
        const keys = p.changes.map((c) => c.key);
        assert.equal(new Set(keys).size, keys.length, 'one change per key');
        const writes = p.changes.filter((c) => !isDelete(c)).map((c) => c.key);
        const deletes = p.changes.filter(isDelete).map((c) => c.key);
        assert.deepEqual(keys, [...writes, ...deletes], 'writes before deletes');
        assert.deepEqual(writes, [...writes].sort(), 'writes sorted');
        assert.deepEqual(deletes, [...deletes].sort(), 'deletes sorted');
        if (input.policy === 'upsert-only') assert.deepEqual(deletes, []);
        const next = new Map(input.current);
        for (const c of p.changes) {
          const cur = input.current.get(c.key);
          if (input.scope !== undefined) assert.ok(input.scope.has(c.key), 'in scope');
          assert.equal(c.expectedLease, cur?.lease ?? '0', 'fenced on the lease seen');
          if (cur !== undefined) assert.ok(ours(cur.lease), `touched a foreign key ${c.key} on lease ${cur.lease}`);
          if (isDelete(c)) {
            assert.equal(input.desired.has(c.key), false);
            assert.equal(c.action === 'deregister', input.claimed?.(c.key) !== undefined);
            next.delete(c.key);
          } else next.set(c.key, { key: c.key, value: c.value, lease: OURS, modRevision: '2' });
        }
        for (const s of p.skips) if (input.scope !== undefined) assert.ok(input.scope.has(s.key));
        const again = plan({ ...input, current: next });
        assert.deepEqual(again.changes, [], 'second round makes no changes');
        // In scope, every desired key that is absent or ours now holds its value on our lease.
        for (const [key, d] of input.desired) {
          if (input.scope !== undefined && !input.scope.has(key)) continue;
          const before = input.current.get(key);
          if (before === undefined || ours(before.lease)) assert.deepEqual([next.get(key)?.value, next.get(key)?.lease], [d.value, OURS]);
          else assert.deepEqual(next.get(key), before);
        }
      }),
      { numRuns: 5_000 },
    );
  });
});
