import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { ChangeLatency, type Stage } from './latency.ts';

describe('ChangeLatency', () => {
  it('times each stage from the first event since the last commit, and keeps the last changes', () => {
    const observed: Array<[Stage, string, number]> = [];
    const latency = new ChangeLatency({ capacity: 2, observe: (stage, change, seconds) => observed.push([stage, change, Math.round(seconds * 1e6) / 1e6]) });
    latency.received('/k1', 1000, 1001);
    latency.received('/k1', 1005, 1006); // a second event before the commit: the first one counts
    latency.taken(['/k1'], 1003);
    latency.sent(['/k1'], 1004);
    latency.committed('/k1', 'deregistration', '42', 1010);
    assert.deepEqual(observed, [
      ['intake', 'deregistration', 0.001],
      ['queue', 'deregistration', 0.002],
      ['plan', 'deregistration', 0.001],
      ['txn', 'deregistration', 0.006],
      ['total', 'deregistration', 0.01],
    ]);
    assert.deepEqual(latency.recent(), [{ key: '/k1', change: 'deregistration', revision: '42', receivedAt: 1000, enqueuedAt: 1001, takenAt: 1003, sentAt: 1004, committedAt: 1010 }]);

    latency.committed('/reconciled', 'registration', '43', 1020); // no event: not timed
    latency.received('/dropped', 1, 2);
    latency.dropped('/dropped');
    latency.committed('/dropped', 'registration', '44', 1030);
    for (const [i, key] of ['/a', '/b', '/c'].entries()) {
      latency.received(key, 2000 + i, 2000 + i);
      latency.committed(key, 'registration', String(50 + i), 2010 + i);
    }
    assert.deepEqual(latency.recent().map((t) => t.key), ['/b', '/c'], 'bounded, oldest first');
    assert.equal(observed.length, 20);
  });
});
