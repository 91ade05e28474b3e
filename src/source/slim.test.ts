import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Pod } from '@kubernetes/client-node';
import { normaliseTimestamp, slimChanged, toSlimPod } from './slim.ts';

function pod(overrides: Partial<V1Pod> = {}): V1Pod {
  return {
    metadata: {
      uid: 'u1',
      name: 'web-1',
      namespace: 'shop',
      resourceVersion: '42',
      creationTimestamp: new Date('2026-01-02T03:04:05Z'),
      annotations: { 'etcd-registrar.io/register': 'true' },
      labels: { app: 'web' },
    },
    spec: {
      nodeName: 'node-a',
      containers: [
        { name: 'a', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 9999 }] },
        { name: 'b', ports: [{ name: 'http', containerPort: 1 }, { name: 'metrics', containerPort: 9090 }] },
      ],
    },
    status: {
      phase: 'Running',
      podIP: '10.0.0.1',
      podIPs: [{ ip: '10.0.0.1' }, { ip: 'fd00::1' }],
      hostIP: '192.168.1.1',
      hostIPs: [{ ip: '192.168.1.1' }, { ip: 'fd01::1' }],
      conditions: [
        { type: 'PodScheduled', status: 'True' },
        { type: 'Ready', status: 'True' },
      ],
    },
    ...overrides,
  };
}

test('toSlimPod keeps the fields the controller needs', () => {
  assert.deepEqual(toSlimPod(pod()), {
    uid: 'u1',
    namespace: 'shop',
    name: 'web-1',
    resourceVersion: '42',
    creationTimestamp: '2026-01-02T03:04:05.000Z',
    annotations: { 'etcd-registrar.io/register': 'true' },
    labels: { app: 'web' },
    nodeName: 'node-a',
    hostIP: '192.168.1.1',
    podIPs: ['10.0.0.1', 'fd00::1'],
    hostIPs: ['192.168.1.1', 'fd01::1'],
    phase: 'Running',
    ready: true,
    terminating: false,
    namedPorts: { http: 8080, metrics: 9090 },
  });
});

test('toSlimPod: undefined when uid, name or namespace is missing', () => {
  for (const key of ['uid', 'name', 'namespace'] as const) {
    const p = pod();
    const meta = { ...p.metadata };
    delete meta[key];
    assert.equal(toSlimPod({ ...p, metadata: meta }), undefined, key);
  }
  assert.equal(toSlimPod({}), undefined);
});

test('toSlimPod: ready only when the Ready condition is "True"', () => {
  for (const status of ['False', 'Unknown', 'true']) {
    const p = pod();
    p.status = { ...p.status, conditions: [{ type: 'Ready', status }] };
    assert.equal(toSlimPod(p)?.ready, false, status);
  }
  const p = pod();
  p.status = { ...p.status, conditions: [{ type: 'ContainersReady', status: 'True' }] };
  assert.equal(toSlimPod(p)?.ready, false);
  p.status = {};
  assert.equal(toSlimPod(p)?.ready, false);
});

test('toSlimPod: terminating when deletionTimestamp is set (Date or string)', () => {
  const p = pod();
  p.metadata = { ...p.metadata, deletionTimestamp: new Date() };
  assert.equal(toSlimPod(p)?.terminating, true);
  const raw = JSON.parse(JSON.stringify(pod())) as V1Pod;
  (raw.metadata as Record<string, unknown>)['deletionTimestamp'] = '2026-01-01T00:00:00Z';
  assert.equal(toSlimPod(raw)?.terminating, true);
});

test('toSlimPod: IP fallbacks to status.podIP / status.hostIP', () => {
  const p = pod();
  p.status = { podIP: '10.1.1.1', hostIP: '10.2.2.2' };
  const slim = toSlimPod(p);
  assert.deepEqual(slim?.podIPs, ['10.1.1.1']);
  assert.deepEqual(slim?.hostIPs, ['10.2.2.2']);
  assert.equal(slim?.hostIP, '10.2.2.2');
  p.status = { podIPs: [], hostIPs: [{ ip: '10.3.3.3' }] };
  assert.deepEqual(toSlimPod(p)?.podIPs, []);
  assert.equal(toSlimPod(p)?.hostIP, '10.3.3.3');
  delete p.status;
  assert.deepEqual(toSlimPod(p)?.podIPs, []);
  assert.equal(toSlimPod(p)?.hostIP, '');
  assert.equal(toSlimPod(p)?.phase, '');
});

test('toSlimPod: raw watch JSON and typed list objects give equal records', () => {
  const typed = toSlimPod(pod());
  const raw = toSlimPod(JSON.parse(JSON.stringify(pod())) as V1Pod);
  assert.deepEqual(raw, typed);
  const rawSeconds = JSON.parse(JSON.stringify(pod())) as V1Pod;
  (rawSeconds.metadata as Record<string, unknown>)['creationTimestamp'] = '2026-01-02T03:04:05Z';
  assert.deepEqual(toSlimPod(rawSeconds), typed);
});

test('toSlimPod keeps string maps only: a map with other values is copied without them, an own "__proto__" stays a key', () => {
  const p = JSON.parse('{"metadata":{"name":"n","namespace":"ns","uid":"u","labels":{"app":"web","n":1,"__proto__":"x"},"annotations":{"a":"b"}}}') as V1Pod;
  const slim = toSlimPod(p);
  assert.deepEqual(Object.entries(slim?.labels ?? {}), [['app', 'web'], ['__proto__', 'x']]);
  assert.equal(Object.getPrototypeOf(slim?.labels), Object.prototype);
  assert.notEqual(slim?.labels, p.metadata?.labels);
  // Every value a string (the API server's maps): the decoded map itself, not a copy per event.
  assert.equal(slim?.annotations, p.metadata?.annotations);
});

test('normaliseTimestamp', () => {
  assert.equal(normaliseTimestamp(undefined), '');
  assert.equal(normaliseTimestamp(new Date('x')), '');
  assert.equal(normaliseTimestamp('garbage'), 'garbage');
  assert.equal(normaliseTimestamp('2026-01-02T03:04:05Z'), '2026-01-02T03:04:05.000Z');
});

test('slimChanged ignores resourceVersion only', () => {
  const a = toSlimPod(pod());
  assert.ok(a);
  assert.equal(slimChanged(a, { ...a, resourceVersion: '43' }), false);
  assert.equal(slimChanged(a, { ...a, ready: false }), true);
  assert.equal(slimChanged(a, { ...a, podIPs: ['10.0.0.2', 'fd00::1'] }), true);
  assert.equal(slimChanged(a, { ...a, annotations: { ...a.annotations, x: 'y' } }), true);
  assert.equal(slimChanged(a, { ...a, annotations: {} }), true);
  assert.equal(slimChanged(a, { ...a, namedPorts: { http: 8080, metrics: 9091 } }), true);
  assert.equal(slimChanged(a, { ...a, terminating: true }), true);
});
