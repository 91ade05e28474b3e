// Unit tests of one keepalive stream session against a fake stream, without etcd.
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import { test } from 'node:test';
import { KeepAliveSession, type KeepAlivePeer, type KeepAliveStream } from './keepalive-stream.ts';

class FakeStream extends EventEmitter {
  readonly written: string[] = [];
  closedBy: 'end' | 'cancel' | undefined;
  failWrites = false;
  write(req: { ID: string }): boolean {
    if (this.failWrites) throw new Error('write after end');
    this.written.push(req.ID);
    return true;
  }
  end(): void {
    this.closedBy = 'end';
  }
  cancel(): void {
    this.closedBy = 'cancel';
  }
  answer(id: string, ttl: number): void {
    this.emit('data', { ID: id, TTL: String(ttl) });
  }
}

interface Seen {
  acks: number[];
  lost: number;
  gone: string[];
  errors: string[];
}

function session(options: { current?: string; grace?: string[]; intervalMs?: number; abort?: AbortController } = {}) {
  const stream = new FakeStream();
  const seen: Seen = { acks: [], lost: 0, gone: [], errors: [] };
  const current = options.current ?? '50';
  const peer: KeepAlivePeer = {
    signal: (options.abort ?? new AbortController()).signal,
    intervalMs: () => options.intervalMs ?? 60_000,
    leasesToRenew: () => [current, ...(options.grace ?? [])],
    isCurrent: (id) => id === current,
    onAck: (at) => seen.acks.push(at),
    onLost: () => seen.lost++,
    onGone: (id) => seen.gone.push(id),
    onError: (err) => seen.errors.push(err instanceof Error ? err.message : String(err)),
  };
  const s = new KeepAliveSession(stream as unknown as KeepAliveStream, peer);
  return { stream, seen, s };
}

test('renews the current lease and those in grace at once; an answer for the current one is an ack', () => {
  const abort = new AbortController();
  const { stream, seen, s } = session({ grace: ['40'], abort });
  assert.deepEqual(stream.written, ['50', '40']);
  stream.answer('50', 30);
  stream.answer('40', 30);
  assert.equal(seen.acks.length, 1);
  // A kick sends again while the last ones were answered.
  s.send();
  assert.deepEqual(stream.written, ['50', '40', '50', '40']);
  abort.abort();
  assert.equal(stream.closedBy, 'end');
  return s.ended.then((end) => assert.equal(end, 'closed'));
});

test('etcd saying the current lease is gone ends the stream "lost"; a lease in grace gone is only dropped', async () => {
  const { stream, seen, s } = session({ grace: ['40'] });
  stream.answer('40', 0);
  assert.deepEqual(seen.gone, ['40']);
  assert.equal(s.finished, false);
  stream.answer('50', 0);
  assert.equal(await s.ended, 'lost');
  assert.equal(seen.lost, 1);
  assert.equal(stream.closedBy, 'end');
});

test('a keepalive unanswered for a whole interval makes the stream stale: cancelled, "broken"', async () => {
  const { stream, seen, s } = session({ intervalMs: 20 });
  assert.equal(await s.ended, 'broken');
  assert.equal(stream.closedBy, 'cancel');
  assert.match(seen.errors[0] ?? '', /^no keepalive ack within \d+ ms$/);
  // A timer can fire a millisecond short of the interval by Date.now(): then one more send goes
  // out before the stale check trips (seen once in CI); never more.
  assert.ok(stream.written.length >= 1 && stream.written.length <= 2 && stream.written.every((id) => id === '50'), `written ${stream.written.join(',')}`);
});

test('answered keepalives keep the stream going, one send per interval', async () => {
  const abort = new AbortController();
  const { stream, s } = session({ intervalMs: 15, abort });
  const answer = setInterval(() => stream.answer('50', 30), 5);
  await new Promise((resolve) => setTimeout(resolve, 100));
  clearInterval(answer);
  assert.equal(s.finished, false);
  assert.ok(stream.written.length >= 3, `sent ${stream.written.length}`);
  abort.abort();
  assert.equal(await s.ended, 'closed');
});

test('a stream error, an end, or a failed write breaks the stream', async () => {
  const errored = session();
  errored.stream.emit('error', new Error('reset'));
  assert.equal(await errored.s.ended, 'broken');
  assert.deepEqual(errored.seen.errors, ['reset']);
  assert.equal(errored.stream.closedBy, 'cancel');

  const ended = session();
  ended.stream.emit('end');
  assert.equal(await ended.s.ended, 'broken');
  assert.deepEqual(ended.seen.errors, []);

  const failing = session();
  failing.stream.failWrites = true;
  failing.s.send();
  assert.equal(await failing.s.ended, 'broken');
  assert.deepEqual(failing.seen.errors, ['write after end']);
});

test('a keeper already stopped ends the session at once, without a keepalive', async () => {
  const abort = new AbortController();
  abort.abort();
  const { stream, s } = session({ abort });
  assert.equal(await s.ended, 'closed');
  assert.deepEqual(stream.written, []);
  assert.equal(stream.closedBy, 'end');
});
