// The live-key rule of the chaos suite's observer: what counts as deleting a live pod's key.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { PodTimeline } from './timeline.ts';

const keyOf = (ip: string): string => `/svc_PRE/${ip}-86`;
const GRACE = 1000;

function timeline(...states: Array<[uid: string, at: number, ip: string, serving: boolean]>): PodTimeline {
  const t = new PodTimeline();
  for (const [uid, at, ip, serving] of states) t.record(uid, `pod-${uid}`, { at, ip, serving });
  return t;
}

describe('PodTimeline.liveDeletes', () => {
  it('flags a DELETE of a pod that is serving well before and after it', () => {
    const t = timeline(['a', 0, '10.0.0.1', true]);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }], GRACE, keyOf), [{ key: keyOf('10.0.0.1'), at: 5000, pod: 'pod-a', late: false }]);
  });

  it('does not flag a DELETE of another key', () => {
    const t = timeline(['a', 0, '10.0.0.1', true]);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.2'), at: 5000 }], GRACE, keyOf), []);
  });

  it('does not flag a pod that stopped serving just after the DELETE (our watch saw it late)', () => {
    const t = timeline(['a', 0, '10.0.0.1', true], ['a', 5500, '10.0.0.1', false]);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }], GRACE, keyOf), []);
  });

  it('flags a pod that stopped serving only after the grace window', () => {
    const t = timeline(['a', 0, '10.0.0.1', true], ['a', 6500, '10.0.0.1', false]);
    assert.equal(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }], GRACE, keyOf).length, 1);
  });

  it('does not flag a pod that turned Ready just before the DELETE (IP reused by a new pod)', () => {
    const t = timeline(['old', 0, '10.0.0.1', true], ['old', 4800, '10.0.0.1', false], ['new', 4900, '10.0.0.1', true]);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }], GRACE, keyOf), []);
  });

  it('does not flag a pod that was not serving before, nor one that is gone', () => {
    const t = timeline(['a', 0, '10.0.0.1', false], ['b', 0, '10.0.0.2', true]);
    t.gone('b', 3000);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }, { key: keyOf('10.0.0.2'), at: 5000 }], GRACE, keyOf), []);
  });

  it('does not flag a pod that flapped inside the window', () => {
    const t = timeline(['a', 0, '10.0.0.1', true], ['a', 4700, '10.0.0.1', false], ['a', 4800, '10.0.0.1', true]);
    assert.deepEqual(t.liveDeletes([{ key: keyOf('10.0.0.1'), at: 5000 }], GRACE, keyOf), []);
  });

  it('keeps only changes and reports the latest state and the first serving time', () => {
    const t = timeline(['a', 0, '', false], ['a', 100, '10.0.0.1', true], ['a', 200, '10.0.0.1', true]);
    assert.deepEqual(t.current(), [{ uid: 'a', name: 'pod-a', ip: '10.0.0.1', serving: true, since: 100 }]);
    assert.deepEqual(t.servingSince('pod-a', 50), { at: 100, ip: '10.0.0.1' });
    assert.equal(t.servingSince('pod-a', 150), undefined);
  });

  it('lists when pods started serving in a window, and when that ended', () => {
    const t = timeline(['a', 0, '10.0.0.1', true], ['a', 300, '10.0.0.1', false], ['a', 400, '10.0.0.1', true], ['b', 250, '10.0.0.2', true]);
    assert.deepEqual(t.servingStarts(100, 500), [
      { name: 'pod-a', ip: '10.0.0.1', at: 400, endedAt: undefined },
      { name: 'pod-b', ip: '10.0.0.2', at: 250, endedAt: undefined },
    ]);
    assert.deepEqual(t.servingStarts(0, 100), [{ name: 'pod-a', ip: '10.0.0.1', at: 0, endedAt: 300 }]);
  });

  it('marks late a DELETE shortly after a real un-Ready spell ended, and only then', () => {
    const flapped = timeline(['a', 0, '', false], ['a', 100, '10.0.0.1', true], ['a', 1000, '10.0.0.1', false], ['a', 2000, '10.0.0.1', true]);
    const key = keyOf('10.0.0.1');
    // Back at 2000; DELETE at 4000 (window 3000..5000 all serving): late with a 5 s window.
    assert.deepEqual(flapped.liveDeletes([{ key, at: 4000 }], GRACE, keyOf, 5000), [{ key, at: 4000, pod: 'pod-a', late: true }]);
    // The same DELETE long after the spell: not late.
    assert.deepEqual(flapped.liveDeletes([{ key, at: 20_000 }], GRACE, keyOf, 5000), [{ key, at: 20_000, pod: 'pod-a', late: false }]);
    // Right after a pod's first Ready: never late.
    const fresh = timeline(['b', 0, '', false], ['b', 2000, '10.0.0.2', true]);
    assert.deepEqual(fresh.liveDeletes([{ key: keyOf('10.0.0.2'), at: 4000 }], GRACE, keyOf, 5000), [{ key: keyOf('10.0.0.2'), at: 4000, pod: 'pod-b', late: false }]);
  });

  it('with a time range for the DELETE, needs the pod serving over the whole range', () => {
    const t = timeline(['a', 0, '10.0.0.1', true], ['a', 3000, '10.0.0.1', false], ['a', 3400, '10.0.0.1', true]);
    const key = keyOf('10.0.0.1');
    // Known only to lie in [2500, 6000]: the un-Ready spell at 3000 is inside: not live.
    assert.deepEqual(t.liveDeletes([{ key, from: 2500, at: 6000 }], GRACE, keyOf), []);
    // Known to lie in [5900, 6000]: live.
    assert.equal(t.liveDeletes([{ key, from: 5900, at: 6000 }], GRACE, keyOf).length, 1);
  });
});
