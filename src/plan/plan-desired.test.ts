// DesiredState + plan together, the way the controller drives them: every pod event plans
// the affected keys (fast path), and a full reconcile follows. Pod IP reuse and
// out-of-order events must never delete (or even rewrite) a live pod's key.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DesiredState } from '../desired/desired-state.ts';
import { isDelete, plan } from './plan.ts';
import { makePod, testConfig } from '../mapping/testing.ts';
import type { PodOptions } from '../mapping/testing.ts';
import type { Change, CurrentEntry, SlimPod } from '../types.ts';

const LEASE = '100';
const KEY = '/search_PRE/172.18.100.31-86';

type Step = { readonly upsert: SlimPod } | { readonly remove: string };

const old = (o: PodOptions = {}) => makePod({ uid: 'old', name: 'search-old', creationTimestamp: '2024-01-01T00:00:00Z', ...o });
const fresh = (o: PodOptions = {}) => makePod({ uid: 'new', name: 'search-new', creationTimestamp: '2024-01-01T00:05:00Z', ...o });

class World {
  readonly state = new DesiredState(testConfig);
  readonly etcd = new Map<string, CurrentEntry>();
  readonly log: Change[] = [];

  step(s: Step): void {
    const keys = 'upsert' in s ? this.state.upsertPod(s.upsert).affectedKeys : this.state.removePod(s.remove);
    this.#run(new Set(keys));
  }

  reconcile(): Change[] {
    return this.#run(undefined);
  }

  #run(scope: ReadonlySet<string> | undefined): Change[] {
    const p = plan({
      desired: this.state.desiredAll(),
      current: this.etcd,
      claimed: (k) => this.state.claimant(k),
      leaseId: LEASE,
      adoptableLeases: new Set(),
      policy: 'sync',
      ...(scope === undefined ? {} : { scope }),
    });
    for (const c of p.changes) {
      assert.equal(this.etcd.get(c.key)?.lease ?? '0', c.expectedLease);
      if (isDelete(c)) this.etcd.delete(c.key);
      else this.etcd.set(c.key, { key: c.key, value: c.value, lease: LEASE, modRevision: '1' });
      this.log.push(c);
    }
    return [...p.changes];
  }
}

const cases: { name: string; steps: Step[]; final: string | undefined }[] = [
  {
    name: 'new pod Ready, then old pod terminates and is deleted',
    steps: [{ upsert: old() }, { upsert: old({ terminating: true, ready: false }) }, { upsert: fresh() }, { remove: 'old' }],
    final: 'new',
  },
  {
    name: 'IP reused before the old pod\'s termination events arrive',
    steps: [{ upsert: old() }, { upsert: fresh() }, { upsert: old({ terminating: true }) }, { upsert: old({ phase: 'Succeeded', ready: false }) }, { remove: 'old' }],
    final: 'new',
  },
  {
    name: 'old pod\'s delete arrives before its termination update (out of order)',
    steps: [{ upsert: old() }, { upsert: fresh() }, { remove: 'old' }, { upsert: old({ terminating: true }) }, { remove: 'old' }],
    final: 'new',
  },
  {
    name: 'new pod seen first, old pod (finished) seen later by a relist',
    steps: [{ upsert: fresh() }, { upsert: old({ phase: 'Failed', ready: false }) }, { remove: 'old' }],
    final: 'new',
  },
  {
    name: 'new pod not Ready yet while the old one terminates: key goes, then comes back',
    steps: [{ upsert: old() }, { upsert: fresh({ ready: false }) }, { upsert: old({ terminating: true }) }, { upsert: fresh() }, { remove: 'old' }],
    final: 'new',
  },
  {
    name: 'the new pod goes un-Ready while the old one is gone: deregistered',
    steps: [{ upsert: old() }, { upsert: fresh() }, { remove: 'old' }, { upsert: fresh({ ready: false }) }],
    final: undefined,
  },
];

describe('DesiredState + plan: IP reuse and out-of-order events', () => {
  for (const c of cases) {
    it(c.name, () => {
      const w = new World();
      for (const s of c.steps) {
        const newServing = w.state.desiredFor(KEY)?.pod.uid === 'new';
        const before = w.log.length;
        w.step(s);
        if (newServing) {
          // Once the new pod served the key, nothing may delete it while it still serves.
          for (const ch of w.log.slice(before)) {
            if (w.state.desiredFor(KEY)?.pod.uid === 'new') assert.ok(!(ch.key === KEY && isDelete(ch)), `deleted live key at ${JSON.stringify(s)}`);
          }
        }
        // etcd holds exactly the desired keys after every event.
        assert.deepEqual(new Set(w.etcd.keys()), new Set(w.state.desiredAll().keys()));
      }
      assert.equal(w.state.desiredFor(KEY)?.pod.uid, c.final);
      assert.deepEqual(w.reconcile(), [], 'the full reconcile finds nothing left to do');
      if (c.final === undefined) assert.equal(w.etcd.has(KEY), false);
      else assert.equal(w.etcd.get(KEY)?.value, '172.18.100.31:86');
    });
  }

  it('deletes of un-Ready pods are deregisters naming the pod; vanished pods give orphan-deletes', () => {
    const w = new World();
    w.step({ upsert: old() });
    w.step({ upsert: old({ ready: false }) });
    assert.deepEqual(w.log.map((c) => [c.action, c.pod?.uid]), [['register', 'old'], ['deregister', 'old']]);
    // A key on our lease that no pod claims (e.g. written before a restart) is an orphan.
    w.etcd.set('/search_PRE/10.9.9.9-86', { key: '/search_PRE/10.9.9.9-86', value: 'x', lease: LEASE, modRevision: '1' });
    assert.deepEqual(w.reconcile().map((c) => [c.action, c.key, c.pod]), [['orphan-delete', '/search_PRE/10.9.9.9-86', undefined]]);
  });

  it('a Deployment scaled 0 -> 5 -> 2 -> 0 keeps etcd equal to the Ready pods', () => {
    const w = new World();
    const pods = (n: number) => Array.from({ length: n }, (_, i) => makePod({ uid: `p${String(i)}`, name: `search-${String(i)}`, podIPs: [`10.0.0.${String(i + 10)}`] }));
    for (const p of pods(5)) w.step({ upsert: p });
    assert.equal(w.etcd.size, 5);
    for (const p of pods(5).slice(2)) {
      w.step({ upsert: { ...p, terminating: true } });
      w.step({ remove: p.uid });
    }
    assert.deepEqual([...w.etcd.keys()].sort(), ['/search_PRE/10.0.0.10-86', '/search_PRE/10.0.0.11-86']);
    for (const p of pods(2)) w.step({ remove: p.uid });
    assert.equal(w.etcd.size, 0);
    assert.deepEqual(w.reconcile(), []);
  });
});
