// Bounds of when an etcd change happened, from revision samples and the watch's arrival time.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { changeTime, type RevisionSample } from './clock.ts';

const samples: RevisionSample[] = [
  { revision: 10n, askedAt: 1000, answeredAt: 1010 },
  { revision: 12n, askedAt: 1100, answeredAt: 1105 },
  // etcd down from 1200 to 9000: no samples.
  { revision: 15n, askedAt: 9000, answeredAt: 9020 },
];

describe('changeTime', () => {
  it('brackets a change between the last sample below it and the first at or above it', () => {
    assert.deepEqual(changeTime(samples, 11n, 50_000), { lo: 1000, hi: 1105 });
    assert.deepEqual(changeTime(samples, 12n, 50_000), { lo: 1000, hi: 1105 });
  });

  it('a watch event replayed late gets the time of the revision, not of its arrival', () => {
    assert.deepEqual(changeTime(samples, 14n, 12_000), { lo: 1100, hi: 9020 });
  });

  it('the arrival is an upper bound too, and alone when no sample saw the revision yet', () => {
    assert.deepEqual(changeTime(samples, 11n, 1050), { lo: 1000, hi: 1050 });
    assert.deepEqual(changeTime(samples, 20n, 9500), { lo: 9000, hi: 9500 });
    assert.deepEqual(changeTime([], 5n, 700), { lo: 700, hi: 700 });
  });
});
