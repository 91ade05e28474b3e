import { test } from 'node:test';
import assert from 'node:assert/strict';
import { pino } from 'pino';
import type { RecordedEvent } from './event-api.ts';
import { EventRecorder, type EventRecorderOptions, type RecorderTimers } from './recorder.ts';

const silent = pino({ level: 'silent' });

/** A manual clock: timers run only when advance() passes their due time. */
class FakeTimers implements RecorderTimers {
  t = 1_000_000;
  timers: { due: number; fn: () => void; id: number }[] = [];
  nextId = 0;
  now(): number {
    return this.t;
  }
  setTimeout(fn: () => void, ms: number): unknown {
    const id = ++this.nextId;
    this.timers.push({ due: this.t + ms, fn, id });
    return id;
  }
  clearTimeout(handle: unknown): void {
    this.timers = this.timers.filter((x) => x.id !== handle);
  }
  async advance(ms: number): Promise<void> {
    const end = this.t + ms;
    for (;;) {
      await settle();
      this.timers.sort((a, b) => a.due - b.due);
      const next = this.timers[0];
      if (next === undefined || next.due > end) break;
      this.timers.shift();
      this.t = next.due;
      next.fn();
    }
    this.t = end;
    await settle();
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((r) => setImmediate(r));
}

function setup(opts: Partial<EventRecorderOptions> = {}, sendImpl?: (e: RecordedEvent) => Promise<void>) {
  const timers = new FakeTimers();
  const sent: RecordedEvent[] = [];
  const recorder = new EventRecorder({
    logger: silent,
    timers,
    send:
      sendImpl ??
      (async (e) => {
        sent.push(e);
      }),
    ...opts,
  });
  return { timers, sent, recorder };
}

const pod = (i: number) => ({ namespace: 'shop', name: `web-${i}`, uid: `uid-${i}` });

test('dedupe: same pod + reason + note within the window is dropped; later it is sent again', async () => {
  const { timers, sent, recorder } = setup({ dedupeWindowMs: 10_000 });
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'port "x" is not a number');
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'port "x" is not a number');
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'service "" is empty');
  recorder.record(pod(2), 'Warning', 'InvalidRegistration', 'port "x" is not a number');
  recorder.record(pod(1), 'Normal', 'Registered', 'port "x" is not a number');
  await timers.advance(0);
  assert.equal(sent.length, 4);
  assert.equal(recorder.stats().deduped, 1);
  await timers.advance(9_999);
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'port "x" is not a number');
  assert.equal(recorder.stats().deduped, 2);
  await timers.advance(1);
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'port "x" is not a number');
  await timers.advance(0);
  assert.equal(sent.length, 5);
});

test('dedupe map is a bounded LRU', async () => {
  const { timers, sent, recorder } = setup({ dedupeMaxEntries: 3 });
  for (let i = 0; i < 4; i++) recorder.record(pod(i), 'Normal', 'Registered', 'n');
  await timers.advance(0);
  assert.equal(sent.length, 4);
  recorder.record(pod(0), 'Normal', 'Registered', 'n'); // evicted: sent again
  recorder.record(pod(3), 'Normal', 'Registered', 'n'); // still remembered
  await timers.advance(0);
  assert.equal(sent.length, 5);
  assert.equal(recorder.stats().deduped, 1);
});

test('global token bucket: burst at once, then the rate; the queue is bounded', async () => {
  const { timers, sent, recorder } = setup({ ratePerSec: 2, burst: 5, queueSize: 10 });
  for (let i = 0; i < 30; i++) recorder.record(pod(i), 'Warning', 'InvalidRegistration', 'bad');
  // The first 4 (concurrency) went straight to sending, 10 more were queued, 16 dropped.
  let s = recorder.stats();
  assert.equal(s.droppedQueueFull, 16);
  assert.equal(s.dropped, 16);
  await timers.advance(0);
  // 5 sent from the burst at once.
  assert.equal(sent.length, 5);
  assert.equal(recorder.stats().queued, 9);
  await timers.advance(1000);
  assert.equal(sent.length, 7);
  await timers.advance(3500);
  assert.equal(sent.length, 14);
  s = recorder.stats();
  assert.equal(s.queued, 0);
  assert.equal(s.sent, 14);
  // Dropped events were not remembered: recording them again works once there is room.
  recorder.record(pod(29), 'Warning', 'InvalidRegistration', 'bad');
  await timers.advance(1000);
  assert.equal(sent.at(-1)?.pod.uid, 'uid-29');
});

test('per-pod limit: a flapping pod gets perPodBurst events, then one per interval', async () => {
  const { timers, sent, recorder } = setup({ perPodBurst: 3, perPodIntervalMs: 30_000 });
  for (let i = 0; i < 10; i++) recorder.record(pod(1), 'Normal', i % 2 ? 'Registered' : 'Deregistered', `flap ${i}`);
  recorder.record(pod(2), 'Normal', 'Registered', 'other pod unaffected');
  await timers.advance(0);
  assert.equal(sent.filter((e) => e.pod.uid === 'uid-1').length, 3);
  assert.equal(sent.filter((e) => e.pod.uid === 'uid-2').length, 1);
  assert.equal(recorder.stats().droppedRateLimited, 7);
  await timers.advance(29_000);
  recorder.record(pod(1), 'Normal', 'Registered', 'flap 11');
  assert.equal(recorder.stats().droppedRateLimited, 8);
  await timers.advance(1_000);
  recorder.record(pod(1), 'Normal', 'Registered', 'flap 12');
  await timers.advance(0);
  assert.equal(sent.filter((e) => e.pod.uid === 'uid-1').length, 4);
});

test('an event dropped because the queue is full uses none of its pod\'s tokens and is not remembered', async () => {
  const { timers, sent, recorder } = setup({ ratePerSec: 1, burst: 1, concurrency: 1, queueSize: 1, perPodBurst: 2, perPodIntervalMs: 600_000 });
  recorder.record(pod(1), 'Normal', 'Registered', 'a'); // sent at once
  recorder.record(pod(1), 'Normal', 'Registered', 'b'); // queued: the queue is full
  for (let i = 0; i < 5; i++) recorder.record(pod(2), 'Normal', 'Registered', 'c'); // all dropped, queue full
  assert.equal(recorder.stats().droppedQueueFull, 5);
  assert.equal(recorder.stats().deduped, 0);
  await timers.advance(2_000);
  assert.deepEqual(sent.map((e) => `${e.pod.uid} ${e.note}`), ['uid-1 a', 'uid-1 b']);
  // pod 2 still has both of its tokens, and the dropped note was not remembered as sent.
  recorder.record(pod(2), 'Normal', 'Registered', 'c');
  await timers.advance(1_000);
  recorder.record(pod(2), 'Normal', 'Registered', 'd');
  await timers.advance(1_000);
  assert.deepEqual(sent.slice(2).map((e) => `${e.pod.uid} ${e.note}`), ['uid-2 c', 'uid-2 d']);
  assert.equal(recorder.stats().droppedRateLimited, 0);
});

test('10,000 invalid pods cannot flood the API server', async () => {
  const { timers, sent, recorder } = setup(); // defaults: 20/s burst 100, queue 1000
  for (let i = 0; i < 10_000; i++) recorder.record(pod(i), 'Warning', 'InvalidRegistration', 'bad port');
  await timers.advance(0);
  assert.equal(sent.length, 100);
  await timers.advance(10_000);
  assert.equal(sent.length, 300);
  const s = recorder.stats();
  assert.equal(s.queued, 704); // 4 went straight to sending, 1000 queued
  assert.equal(s.droppedQueueFull, 8996);
  assert.equal(s.sent + s.queued + s.dropped + s.inFlight, 10_000);
});

test('concurrency: at most N requests in flight', async () => {
  const { timers, recorder } = setup({ concurrency: 2 }, () => new Promise<void>(() => {}));
  for (let i = 0; i < 10; i++) recorder.record(pod(i), 'Normal', 'Registered', 'n');
  await timers.advance(0);
  assert.equal(recorder.stats().inFlight, 2);
  assert.equal(recorder.stats().queued, 8);
});

test('a failed send is counted, never thrown, and may be retried by a later record()', async () => {
  let fail = true;
  const sent: RecordedEvent[] = [];
  const { timers, recorder } = setup({}, async (e) => {
    if (fail) throw Object.assign(new Error('forbidden'), { code: 403 });
    sent.push(e);
  });
  recorder.record(pod(1), 'Normal', 'Registered', 'n');
  await timers.advance(0);
  assert.equal(recorder.stats().failed, 1);
  fail = false;
  recorder.record(pod(1), 'Normal', 'Registered', 'n');
  await timers.advance(0);
  assert.equal(sent.length, 1);
  assert.equal(recorder.stats().deduped, 0);
});

test('a send function that throws synchronously is contained', async () => {
  const { timers, recorder } = setup({}, () => {
    throw new Error('sync');
  });
  assert.doesNotThrow(() => recorder.record(pod(1), 'Normal', 'Registered', 'n'));
  await timers.advance(0);
  assert.equal(recorder.stats().failed, 1);
  assert.equal(recorder.stats().inFlight, 0);
});

test('record() never throws on bad input and never returns a promise', () => {
  const { recorder } = setup();
  const bad = [
    [{ namespace: '', name: 'x', uid: 'u' }, 'Normal', 'Registered'],
    [{ namespace: 'n', name: 'x', uid: '' }, 'Normal', 'Registered'],
    [null, 'Normal', 'Registered'],
    [pod(1), 'Bogus', 'Registered'],
    [pod(1), 'Normal', ''],
  ] as const;
  for (const [p, type, reason] of bad) {
    // @ts-expect-error deliberately wrong input
    assert.equal(recorder.record(p, type, reason, 'n'), undefined);
  }
  assert.equal(recorder.stats().droppedInvalid, 5);
});

test('stop() drops the queue and later records; flush() waits for in-flight sends', async () => {
  const { timers, sent, recorder } = setup({ burst: 1, ratePerSec: 1 });
  recorder.record(pod(1), 'Normal', 'Registered', 'n');
  recorder.record(pod(2), 'Normal', 'Registered', 'n');
  await recorder.flush(100); // the second waits for a token the fake clock never gives: times out
  assert.equal(sent.length, 1);
  recorder.stop();
  recorder.record(pod(3), 'Normal', 'Registered', 'n');
  await timers.advance(5000);
  assert.equal(sent.length, 1);
  assert.equal(recorder.stats().droppedStopped, 2);
  await recorder.flush(100);
});

test('default actions per reason', async () => {
  const { timers, sent, recorder } = setup();
  recorder.record(pod(1), 'Normal', 'Registered', 'a');
  recorder.record(pod(1), 'Normal', 'Deregistered', 'a');
  recorder.record(pod(1), 'Warning', 'InvalidRegistration', 'a');
  recorder.record(pod(1), 'Warning', 'RegistrationRefused', 'a');
  recorder.record(pod(1), 'Warning', 'SomethingElse', 'a');
  recorder.record(pod(1), 'Warning', 'SomethingElse', 'b', 'Custom');
  await timers.advance(0);
  assert.deepEqual(
    sent.map((e) => e.action),
    ['Register', 'Deregister', 'Validate', 'Register', 'SomethingElse', 'Custom'],
  );
});

test('constructor requires a kube access or a send function', () => {
  assert.throws(() => new EventRecorder({ logger: silent }), /kube access/);
});

test('yieldTo: sending waits while more important work is pending, at most maxYieldMs at a time', async () => {
  let busy = true;
  const { timers, sent, recorder } = setup({ yieldTo: () => busy, maxYieldMs: 1000 });
  recorder.record(pod(1), 'Normal', 'Registered', 'a');
  recorder.record(pod(2), 'Normal', 'Registered', 'b');
  await timers.advance(500);
  assert.equal(sent.length, 0, 'held while busy');
  busy = false;
  await timers.advance(50);
  assert.equal(sent.length, 2, 'sent once the work is done');

  // Busy for longer than maxYieldMs: events go out anyway, after at most that long.
  busy = true;
  recorder.record(pod(3), 'Normal', 'Registered', 'c');
  await timers.advance(900);
  assert.equal(sent.length, 2);
  await timers.advance(200);
  assert.equal(sent.length, 3);
  recorder.record(pod(4), 'Normal', 'Registered', 'd');
  await timers.advance(0);
  assert.equal(sent.length, 4, 'still busy: no second wait in the same busy spell');
});

test('holdWhile: sending waits while deregistrations are pending, without a cap', async () => {
  let deregistering = true;
  const { timers, sent, recorder } = setup({ yieldTo: () => true, maxYieldMs: 1000, holdWhile: () => deregistering });
  recorder.record(pod(1), 'Normal', 'Deregistered', 'a');
  await timers.advance(5000);
  assert.equal(sent.length, 0, 'held past maxYieldMs');
  deregistering = false;
  await timers.advance(1100);
  assert.equal(sent.length, 1, 'then only the capped yield applies');
});
