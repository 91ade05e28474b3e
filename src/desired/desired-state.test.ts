import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { DesiredState } from './desired-state.ts';
import { makePod, testConfig } from '../mapping/testing.ts';
import type { PodOptions } from '../mapping/testing.ts';

const KEY = '/search_PRE/172.18.100.31-86';
const KEY2 = '/search_PRE/172.18.100.32-86';

const pod = (uid: string, o: PodOptions = {}) =>
  makePod({ uid, name: `search-${uid}`, ...o });

describe('DesiredState', () => {
  it('a serving pod makes its keys desired; affected keys are reported', () => {
    const s = new DesiredState(testConfig);
    const r = s.upsertPod(pod('a', { ann: { port: '86,9090' } }));
    assert.equal(r.mapping.kind, 'valid');
    assert.deepEqual(r.affectedKeys, [KEY, '/search_PRE/172.18.100.31-9090']);
    assert.deepEqual(s.desiredFor(KEY), { key: KEY, value: '172.18.100.31:86', pod: { namespace: 'default', name: 'search-a', uid: 'a' } });
    assert.equal(s.size, 2);
    assert.equal(s.podCount, 1);
    assert.ok(s.claimed(KEY));
    assert.deepEqual(s.claimant(KEY), { namespace: 'default', name: 'search-a', uid: 'a' });
  });

  it('a pod turning un-Ready keeps claiming its key but no longer wants it', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    const r = s.upsertPod(pod('a', { ready: false }));
    assert.deepEqual(r.affectedKeys, [KEY]);
    assert.equal(s.desiredFor(KEY), undefined);
    assert.ok(s.claimed(KEY));
    assert.deepEqual(s.claimant(KEY), { namespace: 'default', name: 'search-a', uid: 'a' });
    assert.equal(s.size, 0);
    s.upsertPod(pod('a'));
    assert.equal(s.desiredFor(KEY)?.pod.uid, 'a');
  });

  it('a pod without an IP claims nothing', () => {
    const s = new DesiredState(testConfig);
    const r = s.upsertPod(pod('a', { podIPs: [], ready: false }));
    assert.deepEqual(r.affectedKeys, []);
    assert.equal(s.podCount, 0);
  });

  it('removePod returns the keys the pod mapped to, and is idempotent', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    assert.deepEqual(s.removePod('a'), [KEY]);
    assert.equal(s.desiredFor(KEY), undefined);
    assert.equal(s.claimed(KEY), false);
    assert.equal(s.claimant(KEY), undefined);
    assert.deepEqual(s.removePod('a'), []);
    assert.deepEqual(s.removePod('never-seen'), []);
  });

  it('a pod moving between keys (IP change, port change) reports old and new keys', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    const r = s.upsertPod(pod('a', { podIPs: ['172.18.100.32'] }));
    assert.deepEqual(r.affectedKeys, [KEY2, KEY]);
    assert.equal(s.desiredFor(KEY), undefined);
    assert.equal(s.claimed(KEY), false);
    assert.equal(s.desiredFor(KEY2)?.pod.uid, 'a');
  });

  it('a live pod whose annotations turn invalid keeps its last valid keys, following its readiness', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    const bad = s.upsertPod(pod('a', { ann: { port: 'nope' } }));
    assert.equal(bad.mapping.kind, 'invalid');
    assert.deepEqual(bad.affectedKeys, [KEY]);
    assert.equal(s.desiredFor(KEY)?.value, '172.18.100.31:86', 'still registered');
    const unready = s.upsertPod(pod('a', { ann: { port: 'nope' }, ready: false }));
    assert.deepEqual(unready.affectedKeys, [KEY]);
    assert.equal(s.desiredFor(KEY), undefined, 'deregistered when it stops being Ready');
    assert.equal(s.claimed(KEY), true);
  });

  it('a pod that is invalid from the start claims nothing', () => {
    const s = new DesiredState(testConfig);
    const bad = s.upsertPod(pod('a', { ann: { port: 'nope' } }));
    assert.deepEqual(bad.affectedKeys, []);
    assert.equal(s.claimed(KEY), false);
    assert.equal(s.podCount, 0);
  });

  it('a pod opting out releases its keys', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    const out = s.upsertPod(pod('a', { ann: { register: 'false' } }));
    assert.equal(out.mapping.kind, 'ignored');
    assert.deepEqual(out.affectedKeys, [KEY]);
    assert.equal(s.podCount, 0);
  });

  it('a value change (template-relevant data) updates the desired entry', () => {
    const s = new DesiredState({ ...testConfig, valueFormat: 'json' }, { zoneOf: () => 'zone-a' });
    s.upsertPod(pod('a', { nodeName: 'n1' }));
    s.upsertPod(pod('a', { nodeName: 'n2' }));
    assert.match(s.desiredFor(KEY)?.value ?? '', /"node":"n2"/);
  });

  describe('zones (JSON value, {zone})', () => {
    const zones = new Map<string, string>();
    const zoneOf = (node: string): string | undefined => zones.get(node);
    const zoneKey = '/zone-a/search_PRE/172.18.100.31-86';

    it('a pod on an unknown node is held: nothing for a new pod, its keys kept (following readiness) for a known one', () => {
      zones.clear();
      const s = new DesiredState({ ...testConfig, keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}' }, { zoneOf });
      const first = s.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.equal(first.mapping.kind, 'pending');
      assert.deepEqual(first.affectedKeys, []);
      assert.equal(s.size, 0);
      zones.set('n1', 'zone-a');
      assert.deepEqual(s.upsertPod(pod('a', { nodeName: 'n1' })).affectedKeys, [zoneKey]);
      assert.equal(s.desiredFor(zoneKey)?.pod.uid, 'a');
      // The node vanishes from the cache (deleted, or a relist gap): the key stays.
      zones.delete('n1');
      const held = s.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.equal(held.mapping.kind, 'pending');
      assert.equal(s.desiredFor(zoneKey)?.pod.uid, 'a', 'an unknown node never deregisters');
      // Still following readiness while held.
      s.upsertPod(pod('a', { nodeName: 'n1', ready: false }));
      assert.equal(s.desiredFor(zoneKey), undefined);
      assert.equal(s.claimant(zoneKey)?.uid, 'a');
    });

    it('a zone change moves the key (template) and repairs the value (JSON)', () => {
      zones.clear();
      zones.set('n1', 'zone-a');
      const s = new DesiredState({ ...testConfig, keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}', valueTemplate: '{ip}:{port}@{zone}' }, { zoneOf });
      s.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.equal(s.desiredFor(zoneKey)?.value, '172.18.100.31:86@zone-a');
      zones.set('n1', 'zone-b');
      const moved = s.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.deepEqual(moved.affectedKeys, ['/zone-b/search_PRE/172.18.100.31-86', zoneKey]);
      assert.equal(s.desiredFor(zoneKey), undefined);
      assert.equal(s.desiredFor('/zone-b/search_PRE/172.18.100.31-86')?.value, '172.18.100.31:86@zone-b');

      const j = new DesiredState({ ...testConfig, valueFormat: 'json' }, { zoneOf });
      j.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.match(j.desiredFor(KEY)?.value ?? '', /"zone":"zone-b"\}$/);
      zones.set('n1', 'zone-c');
      assert.deepEqual(j.upsertPod(pod('a', { nodeName: 'n1' })).affectedKeys, [KEY]);
      assert.match(j.desiredFor(KEY)?.value ?? '', /"zone":"zone-c"\}$/);
    });

    it('a zone label removed from the node (needed in the key) makes the pod invalid: it keeps its key', () => {
      zones.clear();
      zones.set('n1', 'zone-a');
      const s = new DesiredState({ ...testConfig, keyTemplate: '/{zone}/{service}_{environment}/{ip}-{port}' }, { zoneOf });
      s.upsertPod(pod('a', { nodeName: 'n1' }));
      zones.set('n1', '');
      const r = s.upsertPod(pod('a', { nodeName: 'n1' }));
      assert.equal(r.mapping.kind, 'invalid');
      assert.equal(s.desiredFor(zoneKey)?.pod.uid, 'a');
    });
  });

  describe('pod IP reuse and out-of-order events never remove a live pod\'s key', () => {
    const old = (o: PodOptions = {}) => pod('old', { creationTimestamp: '2024-01-01T00:00:00Z', ...o });
    const fresh = (o: PodOptions = {}) => pod('new', { creationTimestamp: '2024-01-02T00:00:00Z', ...o });

    it('old pod terminating after the new one is Ready', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(old());
      s.upsertPod(fresh());
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
      const r = s.upsertPod(old({ terminating: true }));
      assert.deepEqual(r.affectedKeys, [KEY]);
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
      s.removePod('old');
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
    });

    it('old pod\'s delete event arrives after the new pod is Ready', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(fresh());
      s.upsertPod(old({ phase: 'Succeeded', ready: false }));
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
      assert.deepEqual(s.removePod('old'), [KEY]);
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
    });

    it('a stale "old pod Ready" update arriving late does not steal the key from the newer pod', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(fresh());
      s.upsertPod(old());
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
      s.removePod('old');
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
    });

    it('the new pod not Ready yet: the key is not desired while only the terminating one holds it', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(old({ terminating: true }));
      s.upsertPod(fresh({ ready: false }));
      assert.equal(s.desiredFor(KEY), undefined);
      assert.ok(s.claimed(KEY));
      assert.equal(s.claimant(KEY)?.uid, 'new', 'newest non-serving claimant');
      s.upsertPod(fresh());
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'new');
    });

    it('an old serving pod is still used while the new one is not Ready', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(old());
      s.upsertPod(fresh({ ready: false }));
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'old');
      assert.equal(s.claimant(KEY)?.uid, 'old', 'serving claimant first');
    });

    it('ties on creationTimestamp are broken by uid, whatever the event order', () => {
      for (const order of [['b', 'a'], ['a', 'b']]) {
        const s = new DesiredState(testConfig);
        for (const uid of order) s.upsertPod(pod(uid));
        assert.equal(s.desiredFor(KEY)?.pod.uid, 'a');
      }
    });

    it('an unparsable creationTimestamp counts as oldest', () => {
      const s = new DesiredState(testConfig);
      s.upsertPod(pod('a', { creationTimestamp: 'garbage' }));
      s.upsertPod(pod('b', { creationTimestamp: '2020-01-01T00:00:00Z' }));
      assert.equal(s.desiredFor(KEY)?.pod.uid, 'b');
    });
  });

  it('desiredAll is a snapshot', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'));
    const snap = s.desiredAll();
    s.removePod('a');
    assert.equal(snap.size, 1);
    assert.equal(s.desiredAll().size, 0);
  });

  it('random event sequences agree with a from-scratch computation', () => {
    // Deterministic pseudo-random walk over 6 pods sharing 3 IPs.
    let seed = 42;
    const rnd = (n: number): number => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const s = new DesiredState(testConfig);
    const live = new Map<string, ReturnType<typeof pod>>();
    for (let step = 0; step < 3000; step++) {
      const uid = `p${String(rnd(6))}`;
      if (rnd(5) === 0) {
        s.removePod(uid);
        live.delete(uid);
      } else {
        const p = pod(uid, {
          podIPs: [`172.18.100.${String(30 + rnd(3))}`],
          ready: rnd(3) !== 0,
          terminating: rnd(6) === 0,
          creationTimestamp: `2024-01-0${String(1 + rnd(3))}T00:00:00Z`,
        });
        s.upsertPod(p);
        live.set(uid, p);
      }
      const fresh = new DesiredState(testConfig);
      for (const p of [...live.values()].reverse()) fresh.upsertPod(p);
      assert.deepEqual(s.desiredAll(), fresh.desiredAll(), `step ${String(step)}`);
    }
  });
});

describe('DesiredState with service grants (admit)', () => {
  const HOST_KEY = '/search_PRE/10.0.0.1-86';

  it('asks about the pod\'s service; a refused pod claims nothing and leaves another pod\'s shared key alone', () => {
    const s = new DesiredState(testConfig);
    const asked: string[] = [];
    // Two host-network pods on one node share a key: the granted one keeps it.
    s.upsertPod(pod('granted', { ann: { address: 'host' } }), (service) => (asked.push(service), 'allow'));
    const r = s.upsertPod(pod('refused', { ann: { address: 'host' }, creationTimestamp: '2025-01-01T00:00:00Z' }), (service) => (asked.push(service), 'refuse'));
    assert.deepEqual(asked, ['search', 'search']);
    assert.equal(r.admission, 'refuse');
    assert.deepEqual(r.affectedKeys, []);
    assert.equal(s.desiredFor(HOST_KEY)?.pod.uid, 'granted');
    assert.deepEqual(s.claimant(HOST_KEY), { namespace: 'default', name: 'search-granted', uid: 'granted' });
  });

  it('refusing a registered pod releases its keys (they become affected and undesired)', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'), () => 'allow');
    const r = s.upsertPod(pod('a'), () => 'refuse');
    assert.deepEqual(r.affectedKeys, [KEY]);
    assert.equal(s.desiredFor(KEY), undefined);
    assert.equal(s.claimed(KEY), false);
    const back = s.upsertPod(pod('a'), () => 'allow');
    assert.deepEqual(back.affectedKeys, [KEY]);
    assert.equal(s.desiredFor(KEY)?.pod.uid, 'a');
  });

  it('hold keeps what the pod had and follows its readiness; a new held pod gets nothing', () => {
    const s = new DesiredState(testConfig);
    s.upsertPod(pod('a'), () => 'allow');
    s.upsertPod(pod('a', { ann: { service: 'other' } }), () => 'hold');
    assert.equal(s.desiredFor(KEY)?.value, '172.18.100.31:86', 'the old key stays while the namespace is unknown');
    s.upsertPod(pod('a', { ready: false }), () => 'hold');
    assert.equal(s.desiredFor(KEY), undefined);
    assert.ok(s.claimed(KEY));
    const fresh = s.upsertPod(pod('b', { podIPs: ['172.18.100.32'] }), () => 'hold');
    assert.equal(fresh.admission, 'hold');
    assert.equal(s.desiredFor(KEY2), undefined);
    assert.equal(s.claimed(KEY2), false);
  });

  it('is not asked about pods without registrations (no IP yet, ignored, invalid)', () => {
    const s = new DesiredState(testConfig);
    let asked = 0;
    const admit = () => (asked++, 'refuse' as const);
    assert.equal(s.upsertPod(pod('a', { podIPs: [] }), admit).admission, undefined);
    assert.equal(s.upsertPod(pod('b', { annotations: {} }), admit).admission, undefined);
    assert.equal(s.upsertPod(pod('c', { ann: { port: 'nope' } }), admit).admission, undefined);
    assert.equal(asked, 0);
  });
});
