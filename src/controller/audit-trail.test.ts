// The audit records the controller writes: their fields, and the memory that keeps repeated
// passes from repeating them.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { makePod } from '../mapping/testing.ts';
import { AuditLog } from '../observability/log.ts';
import type { AuditRecord, Change, Plan } from '../types.ts';
import { AuditTrail } from './audit-trail.ts';

function setup() {
  const records: AuditRecord[] = [];
  const events: string[] = [];
  const audit = new AuditLog('owner-a', new Writable({ write: (_chunk, _encoding, callback) => callback() }));
  audit.subscribe((record) => records.push(record));
  const trail = new AuditTrail({ audit, metrics: undefined, events: { record: (pod, type, reason, note) => events.push(`${type} ${reason} ${pod.namespace}/${pod.name}: ${note}`) } });
  return { trail, records, events };
}

const pod = { namespace: 'team-a', name: 'web-1', uid: 'u1' };
const change: Change = { action: 'register', key: '/web/10.0.0.1', value: '10.0.0.1:80', expectedLease: '0', pod, reason: 'pod team-a/web-1 is serving' };

describe('AuditTrail', () => {
  it('writes changes, failures and pod skips with the schema fields', () => {
    const { trail, records } = setup();
    trail.change(change, 'ok', '100');
    trail.change({ ...change, action: 'orphan-delete', pod: undefined, reason: 'no pod' }, 'dry-run', '100');
    trail.failed(change, 'key changed in etcd meanwhile', '100');
    trail.podSkip(pod, 'not granted');
    assert.deepEqual(records, [
      { audit: true, action: 'register', key: '/web/10.0.0.1', value: '10.0.0.1:80', pod: 'team-a/web-1', podUid: 'u1', reason: 'pod team-a/web-1 is serving', owner: 'owner-a', leaseId: '100', outcome: 'ok' },
      { audit: true, action: 'orphan-delete', key: '/web/10.0.0.1', value: '10.0.0.1:80', pod: null, podUid: null, reason: 'no pod', owner: 'owner-a', leaseId: '100', outcome: 'dry-run' },
      { audit: true, action: 'register', key: '/web/10.0.0.1', value: '10.0.0.1:80', pod: 'team-a/web-1', podUid: 'u1', reason: 'pod team-a/web-1 is serving; key changed in etcd meanwhile', owner: 'owner-a', leaseId: '100', outcome: 'error' },
      { audit: true, action: 'skip', key: null, value: null, pod: 'team-a/web-1', podUid: 'u1', reason: 'not granted', owner: 'owner-a', leaseId: null, outcome: 'ok' },
    ]);
  });

  it('audits a contested key once per reason, and again once it was uncontested in scope', () => {
    const { trail, records } = setup();
    const contested = (reason: string): Plan => ({ changes: [], skips: [{ key: '/web/x', reason, pod }] });
    trail.skips(contested('owned by b'));
    trail.skips(contested('owned by b'), new Set(['/web/x']));
    assert.equal(records.length, 1);
    assert.deepEqual({ ...records[0], owner: undefined }, { audit: true, action: 'skip', key: '/web/x', value: null, pod: 'team-a/web-1', podUid: 'u1', reason: 'owned by b', owner: undefined, leaseId: null, outcome: 'ok' });
    trail.skips(contested('owned by c'));
    assert.equal(records.length, 2, 'a new reason is audited');
    trail.skips({ changes: [], skips: [] }, new Set(['/other']));
    trail.skips(contested('owned by c'));
    assert.equal(records.length, 2, 'a key out of scope is still remembered');
    trail.skips({ changes: [], skips: [] }, new Set(['/web/x']));
    trail.skips(contested('owned by c'));
    assert.equal(records.length, 3, 'forgotten once seen uncontested');
  });

  it('reports an invalid pod once per set of problems, with a Warning Event', () => {
    const { trail, records, events } = setup();
    const bad = makePod({ uid: 'x', name: 'x' });
    trail.invalid(bad, ['port missing']);
    trail.invalid(bad, ['port missing']);
    assert.equal(records.length, 1);
    assert.equal(records[0]?.reason, 'invalid registration: port missing');
    assert.deepEqual(events, ['Warning InvalidRegistration default/x: not registered in etcd: port missing']);
    trail.clearInvalid('x');
    trail.invalid(bad, ['port missing']);
    assert.equal(records.length, 2, 'reported again after it was valid');
  });
});
