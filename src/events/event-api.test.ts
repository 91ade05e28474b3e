// The events.k8s.io/v1 Event built for a recorded event: names, limits, the reference to the pod.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { microTime, REPORTING_CONTROLLER, toEventBody, truncateUtf8 } from './event-api.ts';

const pod = (i: number) => ({ namespace: 'shop', name: `web-${i}`, uid: `uid-${i}` });

test('toEventBody: an events.k8s.io/v1 Event regarding the pod', () => {
  const time = Date.UTC(2026, 0, 2, 3, 4, 5, 678);
  const body = toEventBody(
    { pod: pod(1), type: 'Warning', reason: 'InvalidRegistration', action: 'Validate', note: 'bad', time },
    REPORTING_CONTROLLER,
    'etcd-registrar-7d9f-abcde',
  );
  assert.equal(body.apiVersion, 'events.k8s.io/v1');
  assert.equal(body.kind, 'Event');
  assert.equal(body.metadata?.namespace, 'shop');
  assert.match(body.metadata?.name ?? '', /^web-1\.[0-9a-f]+$/);
  assert.equal(body.eventTime, '2026-01-02T03:04:05.678000Z');
  assert.equal(JSON.stringify({ t: body.eventTime }), '{"t":"2026-01-02T03:04:05.678000Z"}');
  assert.equal(body.reportingController, 'etcd-registrar.io/controller');
  assert.equal(body.reportingInstance, 'etcd-registrar-7d9f-abcde');
  assert.equal(body.action, 'Validate');
  assert.equal(body.reason, 'InvalidRegistration');
  assert.equal(body.type, 'Warning');
  assert.equal(body.note, 'bad');
  assert.deepEqual(body.regarding, { apiVersion: 'v1', kind: 'Pod', namespace: 'shop', name: 'web-1', uid: 'uid-1' });
  const again = toEventBody(
    { pod: pod(1), type: 'Warning', reason: 'InvalidRegistration', action: 'Validate', note: 'bad', time },
    REPORTING_CONTROLLER,
    'x',
  );
  assert.notEqual(again.metadata?.name, body.metadata?.name, 'unique names within one ms');
});

test('toEventBody: long names and notes are cut to the API limits', () => {
  const long = { namespace: 'ns', name: 'p'.repeat(253), uid: 'u' };
  const body = toEventBody(
    { pod: long, type: 'Normal', reason: 'R'.repeat(200), action: 'A'.repeat(200), note: 'é'.repeat(2000), time: 1 },
    'c'.repeat(200),
    'i'.repeat(200),
  );
  assert.ok((body.metadata?.name ?? '').length <= 253);
  assert.ok(Buffer.byteLength(body.note ?? '', 'utf8') <= 1024);
  assert.ok(body.note?.endsWith('…'));
  assert.equal(body.reason?.length, 128);
  assert.equal(body.action?.length, 128);
  assert.equal(body.reportingController?.length, 128);
  assert.equal(body.reportingInstance?.length, 128);
  assert.equal(body.regarding?.name, long.name, 'the reference keeps the full name');
});

test('truncateUtf8', () => {
  assert.equal(truncateUtf8('abc', 3), 'abc');
  assert.equal(truncateUtf8('abcd', 3).length <= 3, true);
  const t = truncateUtf8('😀'.repeat(10), 10);
  assert.ok(Buffer.byteLength(t) <= 10);
  assert.ok(!t.includes('\uFFFD'));
});

test('microTime: RFC 3339 in UTC with six fractional digits, as the API server expects', () => {
  assert.equal(microTime(Date.UTC(2026, 11, 3, 7, 21, 30, 855)), '2026-12-03T07:21:30.855000Z');
  assert.equal(microTime(Date.UTC(2026, 0, 1, 0, 0, 0, 0)), '2026-01-01T00:00:00.000000Z');
  // Fractions of a millisecond (a performance.timeOrigin-based clock) are microseconds.
  assert.equal(microTime(Date.UTC(2026, 0, 1, 0, 0, 0, 7) + 0.25), '2026-01-01T00:00:00.007250Z');
  assert.equal(microTime(7.9999), '1970-01-01T00:00:00.007999Z', 'cut, never rounded up into the next millisecond');
  for (const t of [0, 1, 1_767_225_600_123, 1_767_225_600_123.456]) assert.match(microTime(t), /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
});
