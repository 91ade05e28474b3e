// The pod kind on the reflector, against the in-memory ListerWatcher (the loop itself is
// covered by reflector.test.ts; the real API server by pod-source.int.test.ts).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { PodSource, type PodEvent } from './pod-source.ts';
import { FakeApi, fast, silent, until } from './testing.ts';

function mkPod(ns: string, name: string, uid: string, extra: { ready?: boolean; ip?: string } = {}): V1Pod {
  return {
    metadata: { namespace: ns, name, uid, resourceVersion: '0', annotations: {}, labels: {} },
    spec: { containers: [{ name: 'c' }] },
    status: {
      phase: 'Running',
      podIP: extra.ip ?? '10.0.0.1',
      conditions: [{ type: 'Ready', status: extra.ready === false ? 'False' : 'True' }],
    },
  };
}

function setup(api: FakeApi<V1Pod>): { source: PodSource; events: PodEvent[] } {
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events: PodEvent[] = [];
  source.onChange((e) => events.push(e));
  return { source, events };
}

/** A started source over `pods`, its watch open, the events of the initial list cleared. */
async function watching(...pods: V1Pod[]): Promise<{ api: FakeApi<V1Pod>; source: PodSource; events: PodEvent[] }> {
  const api = new FakeApi<V1Pod>();
  for (const pod of pods) api.put(pod);
  const { source, events } = setup(api);
  await source.start();
  await until('the watch', () => api.live().length === 1);
  events.length = 0;
  return { api, source, events };
}

test('pods are kept slim by uid; a status heartbeat is silent, a real change is an upsert', async () => {
  const api = new FakeApi<V1Pod>();
  api.put(mkPod('a', 'p0', 'u0'));
  const { source, events } = setup(api);
  await source.start();
  assert.deepEqual(events.map((e) => [e.type, e.pod.uid, e.pod.name]), [['upsert', 'u0', 'p0']]);
  assert.deepEqual(Object.keys(source.get('u0') ?? {}).sort(), [
    'annotations', 'creationTimestamp', 'hostIP', 'hostIPs', 'labels', 'name', 'namedPorts', 'namespace', 'nodeName', 'phase', 'podIPs', 'ready', 'resourceVersion', 'terminating', 'uid',
  ]);
  await until('the watch', () => api.live().length === 1);
  events.length = 0;
  api.put(mkPod('a', 'p1', 'u1', { ready: false }));
  assert.deepEqual(events.map((e) => [e.type, e.pod.ready]), [['upsert', false]]);
  api.touch('u1');
  assert.equal(events.length, 1, 'resourceVersion-only change emits nothing');
  assert.equal(source.get('u1')?.resourceVersion, String(api.rv), 'but the record is refreshed');
  api.put(mkPod('a', 'p1', 'u1', { ready: true }));
  assert.deepEqual(events.map((e) => [e.type, e.pod.ready]), [['upsert', false], ['upsert', true]]);
  await source.stop();
});

test('a delete carries the cached record (the one that was registered), not the final object', async () => {
  const { api, source, events } = await watching(mkPod('a', 'p1', 'u1', { ip: '10.0.0.7' }));
  api.current.onEvent('DELETED', mkPod('a', 'p1', 'u1', { ip: '10.0.0.8' }));
  assert.deepEqual(events.map((e) => [e.type, e.pod.podIPs]), [['delete', ['10.0.0.7']]]);
  assert.equal(source.size, 0);
  await source.stop();
});

test('a recreated pod (same name, new uid) during a gap: delete old uid, upsert new uid', async () => {
  const { api, source, events } = await watching(mkPod('a', 'sts-0', 'old', { ip: '10.0.0.1' }));
  api.silently(() => {
    api.remove('old');
    api.put(mkPod('a', 'sts-0', 'new', { ip: '10.0.0.2' }));
  });
  api.breakWatches(new Error('socket hang up'));
  await until('relisted', () => !source.stale() && events.length === 2);
  assert.deepEqual(events.map((e) => `${e.type} ${e.pod.uid}`), ['delete old', 'upsert new']);
  await source.stop();
});

test('pods without uid/name/namespace are ignored', async () => {
  const { api, source, events } = await watching();
  api.broadcast('a', 'ADDED', { metadata: { name: 'x' } });
  api.broadcast('a', 'ADDED', { metadata: { name: 'x', uid: 'u' } });
  api.broadcast('a', 'DELETED', null);
  assert.equal(events.length, 0);
  assert.equal(source.size, 0);
  await source.stop();
});

test('per-namespace streams list and watch their own namespace only', async () => {
  const api = new FakeApi<V1Pod>();
  api.put(mkPod('a', 'pa', 'ua'));
  api.put(mkPod('c', 'pc', 'uc'));
  const source = new PodSource({ namespaces: ['a', 'b'], labelSelector: 'app=web', logger: silent, transport: api, backoff: fast });
  await source.start();
  assert.deepEqual(source.list().map((p) => p.name), ['pa']);
  assert.deepEqual(api.listCalls.map((c) => [c.namespace, c.labelSelector]).sort(), [['a', 'app=web'], ['b', 'app=web']]);
  await source.stop();
});

test('constructor requires a kube access or a transport', () => {
  assert.throws(() => new PodSource({ namespaces: [], logger: silent }), /kube access/);
});

test('10,000 pods: paged relist is quick; an unchanged relist emits nothing', async () => {
  const api = new FakeApi<V1Pod>();
  for (let i = 0; i < 10_000; i++) api.put(mkPod(`ns${i % 20}`, `p${i}`, `u${i}`, { ip: `10.${i >> 8}.${i & 255}.1` }));
  const { source, events } = setup(api);
  const t0 = performance.now();
  await source.start();
  const ms = performance.now() - t0;
  assert.equal(source.size, 10_000);
  assert.equal(events.length, 10_000);
  assert.ok(ms < 3000, `initial sync took ${ms} ms`);
  await until('the watch', () => api.live().length === 1);
  events.length = 0;
  api.breakWatches(new Error('reset'));
  await until('synced again', () => source.synced() && api.live().length === 1);
  assert.equal(events.length, 0);
  assert.equal(source.stats().relists, 2);
  await source.stop();
});
