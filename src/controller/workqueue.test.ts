import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { KeyedWorkQueue, type Timers } from './workqueue.ts';

/** Manual clock: timers fire only when advance() passes them. */
function manualTimers(): { timers: Timers; now: () => number; advance: (ms: number) => void } {
  let now = 0;
  const pending = new Map<number, { at: number; callback: () => void }>();
  let next = 0;
  return {
    now: () => now,
    timers: {
      setTimeout: (callback, ms) => {
        const id = next++;
        pending.set(id, { at: now + ms, callback });
        return id;
      },
      clearTimeout: (handle) => pending.delete(handle as number),
    },
    advance: (ms) => {
      now += ms;
      for (const [id, timer] of [...pending].sort((a, b) => a[1].at - b[1].at)) {
        if (timer.at <= now) {
          pending.delete(id);
          timer.callback();
        }
      }
    },
  };
}

describe('KeyedWorkQueue', () => {
  it('deduplicates ready keys and hands them out in FIFO order', () => {
    const queue = new KeyedWorkQueue();
    queue.addAll(['a', 'b', 'a', 'c']);
    assert.equal(queue.readyCount, 3);
    assert.deepEqual(queue.take(2), ['a', 'b']);
    assert.deepEqual(queue.take(10), ['c']);
    assert.deepEqual(queue.take(10), []);
  });

  it('never hands out a key that is being processed; re-adds it after done', () => {
    const queue = new KeyedWorkQueue();
    queue.add('a');
    assert.deepEqual(queue.take(1), ['a']);
    queue.add('a');
    assert.deepEqual(queue.take(10), [], 'a is processing');
    queue.done(['a']);
    assert.deepEqual(queue.take(10), ['a'], 'queued again after done');
    queue.done(['a']);
    assert.deepEqual(queue.take(10), [], 'only once');
  });

  it('backs off exponentially per key and forget resets it', () => {
    const clock = manualTimers();
    const queue = new KeyedWorkQueue({ backoff: { baseMs: 10, maxMs: 50 }, timers: clock.timers, now: clock.now });
    assert.equal(queue.addRateLimited('a'), 10);
    assert.equal(queue.readyCount, 0);
    clock.advance(9);
    assert.equal(queue.readyCount, 0);
    clock.advance(1);
    assert.deepEqual(queue.take(1), ['a']);
    queue.done(['a']);
    assert.equal(queue.addRateLimited('a'), 20);
    assert.equal(queue.addRateLimited('a'), 40);
    assert.equal(queue.addRateLimited('a'), 50, 'capped');
    clock.advance(20);
    assert.deepEqual(queue.take(1), ['a'], 'the earliest pending delay wins');
    queue.forget('a');
    assert.equal(queue.failures('a'), 0);
    assert.equal(queue.addRateLimited('b'), 10, 'per key');
  });

  it('add() overrides a pending delay', () => {
    const clock = manualTimers();
    const queue = new KeyedWorkQueue({ timers: clock.timers, now: clock.now });
    queue.addAfter('a', 1000);
    queue.add('a');
    assert.deepEqual(queue.take(1), ['a']);
    queue.done(['a']);
    clock.advance(1000);
    assert.deepEqual(queue.take(1), [], 'the cancelled delay does not fire');
  });

  it('wakes waiting workers and resolves whenIdle after the last done', async () => {
    const queue = new KeyedWorkQueue();
    const waiting = queue.waitForWork();
    queue.add('a');
    await waiting;
    const keys = queue.take(5);
    let idle = false;
    const idlePromise = queue.whenIdle().then(() => { idle = true; });
    await Promise.resolve();
    assert.equal(idle, false);
    queue.done(keys);
    await idlePromise;
    assert.equal(idle, true);
  });

  it('shutDown drops queued keys and wakes workers', async () => {
    const queue = new KeyedWorkQueue();
    const waiting = queue.waitForWork();
    queue.shutDown();
    await waiting;
    queue.add('a');
    assert.equal(queue.readyCount, 0);
    assert.equal(queue.isShutDown, true);
  });
  it('hands out a deletion enqueued behind N registrations first, in a batch of its own', () => {
    const queue = new KeyedWorkQueue();
    const registrations = Array.from({ length: 500 }, (_, i) => `reg-${i}`);
    queue.addAll(registrations);
    queue.add('dereg-1', true);
    queue.add('dereg-2', true);
    assert.equal(queue.urgentCount, 2);
    assert.deepEqual(queue.take(1000), ['dereg-1', 'dereg-2'], 'only the urgent keys, first-in first-out');
    assert.deepEqual(queue.take(3), ['reg-0', 'reg-1', 'reg-2'], 'then the registrations in order');
  });

  it('an urgent add moves a queued key ahead; a normal add never demotes an urgent one', () => {
    const queue = new KeyedWorkQueue();
    queue.addAll(['a', 'b', 'c']);
    queue.add('c', true);
    queue.add('c');
    assert.equal(queue.readyCount, 3);
    assert.deepEqual(queue.take(10), ['c']);
    assert.deepEqual(queue.take(10), ['a', 'b']);
  });

  it('keeps urgency across processing, delays and backoff', () => {
    const clock = manualTimers();
    const queue = new KeyedWorkQueue({ timers: clock.timers, now: clock.now });
    queue.addAll(['r1', 'r2']);
    queue.add('d');
    assert.deepEqual(queue.take(1), ['r1']);
    queue.add('r1', true); // re-added while processing: queued again, urgent, after done
    queue.done(['r1']);
    assert.deepEqual(queue.take(10), ['r1']);
    queue.done(['r1']);
    queue.addRateLimited('x', true);
    clock.advance(1000);
    assert.deepEqual(queue.take(10), ['x'], 'the retried urgent key comes before r2 and d');
    queue.done(['x']);
    queue.addAfter('y', 50, true);
    queue.add('y'); // cancels the delay: the key stays urgent
    assert.deepEqual(queue.take(10), ['y']);
    assert.deepEqual(queue.take(10), ['r2', 'd']);
  });
});
