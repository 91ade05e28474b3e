import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isDelete, limitDeletes, plan } from './plan.ts';
import type { PlanInput, PodRef } from './plan.ts';
import type { Change, CurrentEntry, DesiredEntry, Plan } from '../types.ts';

const LEASE = '7587869';
const OLD_LEASE = '7587001';
const FOREIGN = '9999';

const want = (key: string, value: string, pod = 'ns/p1', uid = 'u1'): DesiredEntry => ({ key, value, pod: ref(pod, uid) });
/** A PodRef from "namespace/name". */
const ref = (podKey: string, uid: string): PodRef => ({ namespace: podKey.split('/')[0] ?? '', name: podKey.split('/')[1] ?? '', uid });
const have = (key: string, value: string, lease: string): CurrentEntry => ({ key, value, lease, modRevision: '5' });

function input(
  desired: DesiredEntry[],
  current: CurrentEntry[],
  over: Partial<PlanInput> = {},
): PlanInput {
  return {
    desired: new Map(desired.map((d) => [d.key, d])),
    current: new Map(current.map((c) => [c.key, c])),
    leaseId: LEASE,
    adoptableLeases: new Set([OLD_LEASE]),
    policy: 'sync',
    ...over,
  };
}

/** The tiny applier: what etcd looks like after the plan's changes succeed. */
function apply(current: ReadonlyMap<string, CurrentEntry>, p: Plan, lease = LEASE): Map<string, CurrentEntry> {
  const next = new Map(current);
  for (const c of p.changes) {
    const before = next.get(c.key);
    assert.equal(before?.lease ?? '0', c.expectedLease, `fence of ${c.key}`);
    if (isDelete(c)) next.delete(c.key);
    else next.set(c.key, { key: c.key, value: c.value, lease, modRevision: '6' });
  }
  return next;
}

const brief = (p: Plan) => p.changes.map((c) => [c.action, c.key, c.value, c.expectedLease, c.pod?.uid]);

describe('plan: rules', () => {
  it('absent and desired -> register on lease 0 fence', () => {
    const p = plan(input([want('/a', '1')], []));
    assert.deepEqual(brief(p), [['register', '/a', '1', '0', 'u1']]);
    assert.deepEqual(p.changes[0]?.pod, ref('ns/p1', 'u1'));
    assert.match(p.changes[0]?.reason ?? '', /ns\/p1.*absent/);
    assert.deepEqual(p.skips, []);
  });

  it('ours with the same value -> nothing', () => {
    assert.deepEqual(plan(input([want('/a', '1')], [have('/a', '1', LEASE)])), { changes: [], skips: [] });
  });

  it('ours with another value -> repair fenced on our lease', () => {
    const p = plan(input([want('/a', '1')], [have('/a', 'stale', LEASE)]));
    assert.deepEqual(brief(p), [['repair', '/a', '1', LEASE, 'u1']]);
    assert.match(p.changes[0]?.reason ?? '', /value differs/);
  });

  it('on an adoptable lease -> repair moving it to our lease (same value too)', () => {
    const p = plan(input([want('/a', '1'), want('/b', '2')], [have('/a', '1', OLD_LEASE), have('/b', 'x', OLD_LEASE)]));
    assert.deepEqual(brief(p), [
      ['repair', '/a', '1', OLD_LEASE, 'u1'],
      ['repair', '/b', '2', OLD_LEASE, 'u1'],
    ]);
    assert.match(p.changes[0]?.reason ?? '', /adopting the key from our earlier lease 7587001$/);
    assert.match(p.changes[1]?.reason ?? '', /and restoring its value/);
  });

  it('desired but on a foreign lease -> skip, never touched', () => {
    const p = plan(input([want('/a', '1')], [have('/a', 'theirs', FOREIGN)]));
    assert.deepEqual(p.changes, []);
    assert.deepEqual(p.skips, [{ key: '/a', pod: ref('ns/p1', 'u1'), reason: 'owned by someone else (lease 9999); left untouched' }]);
  });

  it('desired but without a lease (old sidecar script) -> skip, never touched', () => {
    const p = plan(input([want('/a', '1')], [have('/a', '1', '0')]));
    assert.deepEqual(p.changes, []);
    assert.match(p.skips[0]?.reason ?? '', /^not leased: written by another tool/);
  });

  it('ours and not desired, pod known -> deregister naming the pod', () => {
    const claimed = (key: string): PodRef | undefined => (key === '/a' ? ref('ns/p9', 'u9') : undefined);
    const p = plan(input([], [have('/a', '1', LEASE)], { claimed }));
    assert.deepEqual(brief(p), [['deregister', '/a', '1', LEASE, 'u9']]);
    assert.match(p.changes[0]?.reason ?? '', /ns\/p9 is not serving/);
  });

  it('ours and not desired, no pod -> orphan-delete without pod', () => {
    const p = plan(input([], [have('/a', '1', LEASE), have('/b', '2', OLD_LEASE)]));
    assert.deepEqual(brief(p), [
      ['orphan-delete', '/a', '1', LEASE, undefined],
      ['orphan-delete', '/b', '2', OLD_LEASE, undefined],
    ]);
    assert.equal(p.changes[0]?.pod, undefined);
  });

  it('foreign keys not desired are left alone silently (no skip flood)', () => {
    const p = plan(input([], [have('/a', '1', '0'), have('/b', '2', FOREIGN)]));
    assert.deepEqual(p, { changes: [], skips: [] });
  });

  it('upsert-only: writes still happen, deletes become skips', () => {
    const claimed = (key: string): PodRef | undefined => (key === '/b' ? ref('ns/p2', 'u2') : undefined);
    const p = plan(input([want('/c', '3')], [have('/a', '1', LEASE), have('/b', '2', LEASE)], { policy: 'upsert-only', claimed }));
    assert.deepEqual(brief(p), [['register', '/c', '3', '0', 'u1']]);
    assert.deepEqual(p.skips, [
      { key: '/a', pod: undefined, reason: 'policy upsert-only: orphaned key not deleted' },
      { key: '/b', pod: ref('ns/p2', 'u2'), reason: 'policy upsert-only: key of pod ns/p2, which is not serving, not deleted' },
    ]);
  });

  it('lease 0 is never ours, even if we are (wrongly) told our lease is 0', () => {
    const p = plan(input([want('/a', '1')], [have('/a', 'x', '0'), have('/b', 'y', '0')], { leaseId: '0', adoptableLeases: new Set(['0']) }));
    assert.deepEqual(p.changes, []);
    assert.equal(p.skips.length, 1);
  });

  it('scope limits the plan to the given keys (fast path)', () => {
    const inp = input([want('/a', '1'), want('/b', '2')], [have('/c', '3', LEASE), have('/d', '4', LEASE)], { scope: new Set(['/b', '/d', '/zz']) });
    assert.deepEqual(brief(plan(inp)), [
      ['register', '/b', '2', '0', 'u1'],
      ['orphan-delete', '/d', '4', LEASE, undefined],
    ]);
  });

  it('deterministic order: sorted by key, writes before deletes, whatever the map order', () => {
    const d = [want('/z', '1'), want('/b', '2'), want('/m', '3')];
    const c = [have('/y', 'a', LEASE), have('/m', 'old', LEASE), have('/a', 'b', LEASE), have('/q', 'c', FOREIGN)];
    const p1 = plan(input(d, c));
    const p2 = plan(input([...d].reverse(), [...c].reverse()));
    assert.deepEqual(p1, p2);
    assert.deepEqual(p1.changes.map((x) => `${x.action} ${x.key}`), [
      'register /b',
      'repair /m',
      'register /z',
      'orphan-delete /a',
      'orphan-delete /y',
    ]);
  });

  it('the plan does not mutate its inputs', () => {
    const inp = input([want('/a', '1')], [have('/b', '2', LEASE)]);
    const before = JSON.stringify([[...inp.desired], [...inp.current]]);
    plan(inp);
    assert.equal(JSON.stringify([[...inp.desired], [...inp.current]]), before);
  });
});

describe('plan: second round makes no changes', () => {
  const scenarios: [string, DesiredEntry[], CurrentEntry[], Partial<PlanInput>][] = [
    ['empty etcd', [want('/a', '1'), want('/b', '2')], [], {}],
    [
      'mixed: stale, adoptable, orphan, foreign, unleased',
      [want('/a', '1'), want('/b', '2'), want('/c', '3'), want('/f', '6'), want('/g', '7')],
      [have('/a', 'x', LEASE), have('/b', '2', OLD_LEASE), have('/o', 'orphan', LEASE), have('/f', 'theirs', FOREIGN), have('/g', 'script', '0'), have('/h', 'x', '0')],
      {},
    ],
    ['upsert-only', [want('/a', '1')], [have('/o', 'orphan', LEASE), have('/a', 'old', OLD_LEASE)], { policy: 'upsert-only' }],
  ];
  for (const [name, d, c, over] of scenarios) {
    it(name, () => {
      const first = plan(input(d, c, over));
      assert.ok(first.changes.length > 0);
      const after = apply(new Map(c.map((e) => [e.key, e])), first);
      const second = plan({ ...input(d, [], over), current: after });
      assert.deepEqual(second.changes, []);
      assert.deepEqual(second.skips, first.skips, 'skips are stable');
      // Foreign keys survived untouched.
      for (const e of c) if (e.lease === '0' || e.lease === FOREIGN) assert.deepEqual(after.get(e.key), e);
    });
  }

  it('randomized: any desired/current converges in one round and never touches foreign keys', () => {
    let seed = 7;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const leases = [LEASE, OLD_LEASE, FOREIGN, '0'];
    for (let round = 0; round < 500; round++) {
      const d: DesiredEntry[] = [];
      const c: CurrentEntry[] = [];
      for (let k = 0; k < 12; k++) {
        const key = `/k${String(k)}`;
        if (rnd(2) === 0) d.push(want(key, `v${String(rnd(2))}`));
        if (rnd(2) === 0) c.push(have(key, `v${String(rnd(2))}`, leases[rnd(4)] ?? '0'));
      }
      const policy = rnd(2) === 0 ? 'sync' : 'upsert-only';
      const first = plan(input(d, c, { policy }));
      const after = apply(new Map(c.map((e) => [e.key, e])), first);
      assert.deepEqual(plan({ ...input(d, [], { policy }), current: after }).changes, []);
      for (const e of c) if (e.lease === '0' || e.lease === FOREIGN) assert.deepEqual(after.get(e.key), e);
      for (const x of d) {
        const now = after.get(x.key);
        const was = c.find((e) => e.key === x.key);
        if (was === undefined || was.lease === LEASE || was.lease === OLD_LEASE) assert.deepEqual([now?.value, now?.lease], [x.value, LEASE]);
      }
    }
  });
});

describe('limitDeletes', () => {
  const orphan = (key: string): Change => ({ action: 'orphan-delete', key, value: 'v', expectedLease: LEASE, reason: 'r' });
  const dereg = (key: string): Change => ({ action: 'deregister', key, value: 'v', expectedLease: LEASE, pod: ref('ns/p', 'u'), reason: 'r' });
  const reg = (key: string): Change => ({ action: 'register', key, value: 'v', expectedLease: '0', pod: ref('ns/p', 'u'), reason: 'r' });
  const mk = (...changes: Change[]): Plan => ({ changes, skips: [{ key: '/s', reason: 'x' }] });

  it('within the share: unchanged', () => {
    const p = mk(reg('/a'), orphan('/b'), orphan('/c'));
    const r = limitDeletes(p, 10, 0.2, false);
    assert.equal(r.plan, p);
    assert.deepEqual(r.refused, []);
    assert.equal(r.reason, undefined);
  });

  it('over the share: every orphan-delete refused, writes and deregisters kept', () => {
    const p = mk(reg('/a'), dereg('/d'), orphan('/b'), orphan('/c'), orphan('/e'));
    const r = limitDeletes(p, 10, 0.2, false);
    assert.deepEqual(r.plan.changes.map((c) => c.key), ['/a', '/d']);
    assert.deepEqual(r.plan.skips, p.skips);
    assert.deepEqual(r.refused.map((c) => c.key), ['/b', '/c', '/e']);
    assert.match(r.reason ?? '', /refusing 3 orphan deletes: more than 20% of the 10 keys we own \(at most 2 allowed\)/);
  });

  it('force disables the valve', () => {
    const p = mk(orphan('/a'), orphan('/b'), orphan('/c'));
    assert.deepEqual(limitDeletes(p, 3, 0.1, true), { plan: p, refused: [] });
  });

  it('a single orphan-delete is always allowed', () => {
    for (const owned of [0, 1, 100]) assert.deepEqual(limitDeletes(mk(orphan('/a')), owned, 0, false).refused, []);
  });

  it('deleting all of a few keys is refused below share 1', () => {
    assert.equal(limitDeletes(mk(orphan('/a'), orphan('/b')), 2, 0.5, false).refused.length, 2);
    assert.equal(limitDeletes(mk(orphan('/a'), orphan('/b')), 2, 1, false).refused.length, 0);
  });

  it('deregisters alone are never refused', () => {
    const p = mk(dereg('/a'), dereg('/b'), dereg('/c'));
    assert.deepEqual(limitDeletes(p, 3, 0, false).refused, []);
  });

  it('NaN / negative share or counts are treated as 0 (most cautious)', () => {
    const p = mk(orphan('/a'), orphan('/b'));
    assert.equal(limitDeletes(p, 100, Number.NaN, false).refused.length, 2);
    assert.equal(limitDeletes(p, 100, -1, false).refused.length, 2);
    assert.equal(limitDeletes(p, Number.NaN, 0.5, false).refused.length, 2);
  });

  it('boundary: exactly floor(share x owned) is allowed', () => {
    const p = mk(orphan('/a'), orphan('/b'), orphan('/c'));
    assert.equal(limitDeletes(p, 10, 0.3, false).refused.length, 0);
    assert.equal(limitDeletes(p, 10, 0.29, false).refused.length, 3);
  });
});
