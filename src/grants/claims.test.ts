// The service grants as the controller applies them, without the controller: verdicts, the
// memory of refused and ungranted claims, warnings per namespace/service pair and audit reasons.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { makePod } from '../mapping/testing.ts';
import { Metrics } from '../observability/metrics.ts';
import type { Change, PodMapping, SlimPod } from '../types.ts';
import { ClaimPairs, GrantClaims } from './claims.ts';
import type { GrantStatus, GrantsMode } from './grants.ts';
import type { GrantsPort } from './service-grants.ts';

/** Grants where `granted` lists "namespace/service" pairs and `known` the namespaces in the cache. */
function fakeGrants(mode: GrantsMode, granted: string[], known: string[]): GrantsPort {
  return {
    mode,
    annotation: 'example.io/allowed-services',
    start: async () => undefined,
    stop: () => undefined,
    onChange: () => undefined,
    status: (namespace, service): GrantStatus =>
      granted.includes(`${namespace}/${service}`) ? 'granted' : known.includes(namespace) ? 'not-granted' : 'unknown',
  };
}

function setup(grants: GrantsPort | undefined) {
  const audits: string[] = [];
  const events: string[] = [];
  const logs: { msg: string; pod?: string; namespace?: string; service?: string }[] = [];
  const logger = pino({ level: 'debug' }, new Writable({ write: (chunk: Buffer, _encoding, callback) => { logs.push(JSON.parse(chunk.toString()) as { msg: string }); callback(); } }));
  const metrics = new Metrics({ queueDepth: () => 0, lastKeepaliveAt: () => undefined, ownedKeys: () => 0, watchedPods: () => 0 });
  let now = 0;
  const claims = new GrantClaims(
    {
      grants, metrics, logger,
      events: { record: (pod, type, reason, note) => events.push(`${type} ${reason} ${pod.namespace}/${pod.name}: ${note}`) },
      auditSkip: (pod, reason) => audits.push(`${pod.namespace}/${pod.name} ${pod.uid}: ${reason}`),
    },
    () => now,
  );
  const count = async (counter: 'ungrantedClaims' | 'skips', label: Record<string, string>): Promise<number> => {
    const { values } = await metrics[counter].get();
    return values.find((v) => Object.entries(label).every(([k, x]) => (v.labels as Record<string, unknown>)[k] === x))?.value ?? 0;
  };
  return { claims, audits, events, logs, count, advance: (ms: number) => { now += ms; } };
}

const searchPod = (uid: string, namespace: string): SlimPod => makePod({ uid, name: uid, namespace, podIPs: ['10.1.0.2'], ann: { service: 'search' } });
const mappingOf = (...keys: string[]): PodMapping => ({
  kind: 'valid',
  serving: true,
  registrations: keys.map((key) => ({ key, value: '10.1.0.2:86', service: 'search', environment: 'PRE', ip: '10.1.0.2', port: 86 })),
});
const change = (action: Change['action'], uid: string): Change => ({
  action, key: '/search_PRE/10.1.0.2-86', value: '10.1.0.2:86', expectedLease: '0', pod: { namespace: 'team-b', name: uid, uid }, reason: 'planned',
});

/** Upserts the pod the way the controller does: the desired state asks `admit`, then the verdict is reported. */
function upsert(claims: GrantClaims, pod: SlimPod, mapping: PodMapping = mappingOf('/search_PRE/10.1.0.2-86')): { admission: string | undefined; released: boolean | undefined } {
  const judgement = claims.judge(pod);
  const admission = judgement?.admit('search');
  return { admission, released: judgement?.report(mapping) };
}

describe('GrantClaims', () => {
  it('without grants: no verdict, plans pass unchanged', () => {
    const { claims } = setup(undefined);
    assert.equal(claims.judge(searchPod('b', 'team-b')), undefined);
    const plan = { changes: [change('register', 'b')], skips: [] };
    assert.equal(claims.explain(plan), plan);
  });

  it('a pod without registrations is never judged: nothing is reported', () => {
    const { claims, audits, events } = setup(fakeGrants('strict', [], ['team-b']));
    assert.equal(claims.judge(searchPod('b', 'team-b'))?.report({ kind: 'ignored' }), false);
    assert.deepEqual([audits, events], [[], []]);
  });

  it('strict: refuses once per pod and service (audit skip, metrics, Event), releases its keys and explains its deregistration', async () => {
    const { claims, audits, events, count } = setup(fakeGrants('strict', [], ['team-b']));
    const pod = searchPod('b', 'team-b');
    assert.deepEqual(upsert(claims, pod, mappingOf('/search_PRE/10.1.0.2-86', '/search_PRE/10.1.0.2-87')), { admission: 'refuse', released: true });
    assert.deepEqual(upsert(claims, { ...pod, resourceVersion: '2' }), { admission: 'refuse', released: true }, 'released again, reported once');
    assert.deepEqual(audits, [
      'team-b/b b: service "search" is not granted to namespace "team-b" (--service-grants strict; granted by the Namespace annotation example.io/allowed-services): not registered: /search_PRE/10.1.0.2-86, /search_PRE/10.1.0.2-87',
    ]);
    assert.deepEqual(events, [
      'Warning ServiceNotGranted team-b/b: not registered in etcd: service "search" is not granted to namespace "team-b"; a cluster admin grants it with the Namespace annotation example.io/allowed-services (comma-separated service names)',
    ]);
    assert.equal(await count('skips', { reason: 'not-granted' }), 1);
    assert.equal(await count('ungrantedClaims', { outcome: 'refused' }), 1);
    const explained = claims.explain({ changes: [change('deregister', 'b'), change('orphan-delete', 'x')], skips: [] });
    assert.deepEqual(explained.changes.map((c) => c.reason), ['service "search" is not granted to namespace "team-b" (--service-grants strict)', 'planned']);
  });

  it('strict: an unknown namespace holds (nothing reported, nothing released); a grant clears the refusal', () => {
    const known = ['team-b'];
    const granted: string[] = [];
    const { claims, audits } = setup(fakeGrants('strict', granted, known));
    assert.deepEqual(upsert(claims, searchPod('n', 'new-ns')), { admission: 'hold', released: false });
    assert.deepEqual(audits, []);
    upsert(claims, searchPod('b', 'team-b'));
    granted.push('team-b/search');
    assert.deepEqual(upsert(claims, searchPod('b', 'team-b')), { admission: 'allow', released: false });
    const plan = { changes: [change('deregister', 'b')], skips: [] };
    assert.equal(claims.explain(plan), plan, 'nothing remembered any more');
    granted.length = 0;
    upsert(claims, searchPod('b', 'team-b'));
    assert.equal(audits.length, 2, 'refused again after the revoke: audited once more');
  });

  it('open: allows with one warning per namespace/service pair, Events a burst of 3 then one a minute, every pod counted', async () => {
    const { claims, events, logs, count, advance } = setup(fakeGrants('open', [], ['team-b']));
    for (const uid of ['p1', 'p2', 'p3', 'p4', 'p5']) assert.deepEqual(upsert(claims, searchPod(uid, 'team-b')), { admission: 'allow', released: false });
    upsert(claims, searchPod('p1', 'team-b'));
    const warnings = logs.filter((line) => line.msg === 'service not granted to the namespace; registered anyway (--service-grants open)');
    assert.deepEqual(warnings.map((w) => [w.pod, w.namespace, w.service]), [['team-b/p1', 'team-b', 'search']]);
    assert.deepEqual(events.map((e) => e.split(':')[0]), ['Warning ServiceNotGranted team-b/p1', 'Warning ServiceNotGranted team-b/p2', 'Warning ServiceNotGranted team-b/p3']);
    assert.match(events[0] ?? '', /registered although service "search" is not granted to namespace "team-b" \(--service-grants open; strict mode will refuse it\); a cluster admin grants it/);
    assert.equal(await count('ungrantedClaims', { outcome: 'allowed' }), 5);
    advance(60_000);
    upsert(claims, searchPod('p6', 'team-b'));
    assert.equal(events.length, 4, 'one more Event a minute later');
    const explained = claims.explain({ changes: [change('register', 'p2'), change('repair', 'p3'), change('deregister', 'p4')], skips: [] });
    assert.deepEqual(explained.changes.map((c) => c.reason), [
      'planned; warning: service "search" is not granted to namespace "team-b" (allowed by --service-grants open; strict would refuse it)',
      'planned; warning: service "search" is not granted to namespace "team-b" (allowed by --service-grants open; strict would refuse it)',
      'planned',
    ]);
    claims.forget('p2');
    assert.equal(claims.explain({ changes: [change('register', 'p2')], skips: [] }).changes[0]?.reason, 'planned', 'a deleted pod is forgotten');
  });
});

describe('ClaimPairs', () => {
  it('one first per namespace/service pair; Events: a burst of 3, then one a minute', () => {
    let now = 0;
    const pairs = new ClaimPairs(() => now);
    const a = { namespace: 'team-b', service: 'search' };
    const seen = Array.from({ length: 5 }, () => pairs.note(a));
    assert.deepEqual(seen.map((x) => x.first), [true, false, false, false, false]);
    assert.deepEqual(seen.map((x) => x.event), [true, true, true, false, false]);
    assert.deepEqual(pairs.note({ namespace: 'team-b', service: 'web' }), { first: true, event: true }, 'another pair has its own budget');
    now = 59_999;
    assert.equal(pairs.note(a).event, false);
    now = 60_000;
    assert.deepEqual(pairs.note(a), { first: false, event: true });
    assert.equal(pairs.note(a).event, false);
  });
});
