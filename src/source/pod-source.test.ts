// Unit tests of the list/watch loop against an in-memory transport (the real API server is
// exercised in pod-source.int.test.ts).
import { test } from 'node:test';
import { backoffDelay } from '../backoff.ts';
import assert from 'node:assert/strict';
import { Writable } from 'node:stream';
import { pino, type Logger } from 'pino';
import type { V1Pod } from '@kubernetes/client-node';
import {
  PodSource,
  PodSourceStoppedError,
  statusCodeOf,
  type PodEvent,
  type PodListPage,
  type PodTransport,
  type WatchHandle,
} from './pod-source.ts';

const silent = pino({ level: 'silent' });

function capturingLogger(): { logger: Logger; lines: Record<string, unknown>[] } {
  const lines: Record<string, unknown>[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const l of chunk.toString().split('\n')) if (l) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: pino({ level: 'debug' }, stream), lines };
}

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

interface FakeWatch {
  namespace: string | undefined;
  resourceVersion: string;
  onEvent: (type: string, object: unknown) => void;
  onDone: (err: unknown) => void;
  aborted: boolean;
}

/** An in-memory API server: pods with resource versions, lists (paged), watches. */
class FakeApi implements PodTransport {
  pods = new Map<string, V1Pod>();
  rv = 1;
  listCalls: { namespace: string | undefined; continueToken: string | undefined }[] = [];
  watchCalls: { namespace: string | undefined; resourceVersion: string; timeoutSeconds: number }[] = [];
  watches: FakeWatch[] = [];
  failLists = 0;
  listError: unknown = Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' });
  failWatches = 0;
  watchError: unknown = Object.assign(new Error('Forbidden'), { statusCode: 403 });
  /** When set, watches are accepted but closed at once, cleanly. */
  closeWatchesAtOnce = false;
  /** When set, watches never connect (headers never arrive). */
  hangWatches = false;

  put(pod: V1Pod): V1Pod {
    const ns = pod.metadata?.namespace ?? '';
    const uid = pod.metadata?.uid ?? '';
    const existed = this.pods.has(uid);
    const stored: V1Pod = JSON.parse(JSON.stringify(pod)) as V1Pod;
    stored.metadata = { ...stored.metadata, resourceVersion: String(++this.rv) };
    this.pods.set(uid, stored);
    this.broadcast(ns, existed ? 'MODIFIED' : 'ADDED', stored);
    return stored;
  }

  /** Change only the resourceVersion, like a status heartbeat that the slim record ignores. */
  touch(uid: string): void {
    const pod = this.pods.get(uid);
    assert.ok(pod);
    this.put(pod);
  }

  remove(uid: string): void {
    const pod = this.pods.get(uid);
    assert.ok(pod);
    this.pods.delete(uid);
    const copy: V1Pod = { ...pod, metadata: { ...pod.metadata, resourceVersion: String(++this.rv) } };
    this.broadcast(pod.metadata?.namespace ?? '', 'DELETED', copy);
  }

  /** Mutate without telling any watcher (what happens during a watch gap). */
  silently(fn: () => void): void {
    const saved = this.watches;
    this.watches = [];
    fn();
    this.watches = saved;
  }

  broadcast(ns: string, type: string, object: unknown): void {
    for (const w of this.live()) if (w.namespace === undefined || w.namespace === ns) w.onEvent(type, object);
  }

  live(): FakeWatch[] {
    return this.watches.filter((w) => !w.aborted);
  }

  /** End every live watch as the transport would on a connection error. */
  breakWatches(err: unknown): void {
    for (const w of this.live()) {
      w.aborted = true;
      w.onDone(err);
    }
  }

  async list(req: {
    namespace: string | undefined;
    labelSelector: string | undefined;
    limit: number;
    continueToken: string | undefined;
  }): Promise<PodListPage> {
    this.listCalls.push({ namespace: req.namespace, continueToken: req.continueToken });
    await Promise.resolve();
    if (this.failLists > 0) {
      this.failLists--;
      throw this.listError;
    }
    const all = [...this.pods.values()].filter(
      (p) => req.namespace === undefined || p.metadata?.namespace === req.namespace,
    );
    const start = req.continueToken === undefined ? 0 : Number(req.continueToken);
    const items = all.slice(start, start + req.limit);
    const next = start + req.limit < all.length ? String(start + req.limit) : undefined;
    return { items: JSON.parse(JSON.stringify(items)) as V1Pod[], resourceVersion: String(this.rv), continueToken: next };
  }

  async watch(
    req: { namespace: string | undefined; labelSelector: string | undefined; resourceVersion: string; timeoutSeconds: number },
    onEvent: (type: string, object: unknown) => void,
    onDone: (err: unknown) => void,
  ): Promise<WatchHandle> {
    this.watchCalls.push({ namespace: req.namespace, resourceVersion: req.resourceVersion, timeoutSeconds: req.timeoutSeconds });
    const w: FakeWatch = { namespace: req.namespace, resourceVersion: req.resourceVersion, onEvent, onDone, aborted: false };
    if (this.hangWatches) return new Promise<WatchHandle>(() => {});
    await Promise.resolve();
    if (this.failWatches > 0) {
      this.failWatches--;
      w.aborted = true;
      onDone(this.watchError);
      return { abort() {} };
    }
    this.watches.push(w);
    if (this.closeWatchesAtOnce) {
      queueMicrotask(() => {
        w.aborted = true;
        onDone(null);
      });
    }
    return {
      abort() {
        w.aborted = true;
      },
    };
  }
}

const fast = { initialMs: 5, maxMs: 20 };

function collect(source: PodSource): PodEvent[] {
  const events: PodEvent[] = [];
  source.onChange((e) => events.push(e));
  return events;
}

function summary(events: PodEvent[]): string[] {
  return events.map((e) => `${e.type} ${e.pod.namespace}/${e.pod.name}`).sort();
}

async function until(cond: () => boolean, timeoutMs = 2000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not reached in time');
    await new Promise((r) => setTimeout(r, 2));
  }
}

test('backoffDelay: equal jitter, doubling, capped', () => {
  const o = { initialMs: 100, maxMs: 1000 };
  assert.equal(backoffDelay(1, o.initialMs, o.maxMs, () => 0), 50);
  assert.equal(backoffDelay(1, o.initialMs, o.maxMs, () => 0.999999), 100);
  assert.equal(backoffDelay(2, o.initialMs, o.maxMs, () => 0), 100);
  assert.equal(backoffDelay(3, o.initialMs, o.maxMs, () => 0), 200);
  assert.equal(backoffDelay(10, o.initialMs, o.maxMs, () => 0), 500);
  assert.equal(backoffDelay(1000, o.initialMs, o.maxMs, () => 1), 1000);
});

test('statusCodeOf reads Watch and ApiException codes', () => {
  assert.equal(statusCodeOf(Object.assign(new Error('x'), { statusCode: 410 })), 410);
  assert.equal(statusCodeOf({ code: 403 }), 403);
  assert.equal(statusCodeOf({ code: 'ECONNRESET' }), undefined);
  assert.equal(statusCodeOf(null), undefined);
});

test('start resolves after the initial list; cache holds slim records; watch starts at the list RV', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'p1', 'u1'));
  api.put(mkPod('b', 'p2', 'u2'));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  assert.equal(source.synced(), false);
  await source.start();
  assert.equal(source.synced(), true);
  assert.equal(source.stale(), false);
  assert.deepEqual(summary(events), ['upsert a/p1', 'upsert b/p2']);
  assert.equal(source.get('u1')?.name, 'p1');
  assert.equal(source.list().length, 2);
  assert.equal(source.size, 2);
  await until(() => api.watchCalls.length === 1);
  assert.equal(api.watchCalls[0]?.resourceVersion, String(api.rv));
  assert.equal(api.watchCalls[0]?.namespace, undefined);
  const t = api.watchCalls[0]?.timeoutSeconds ?? 0;
  assert.ok(t >= 300 && t < 600, String(t));
  const st = source.stats();
  assert.equal(st.pods, 2);
  assert.equal(st.relists, 1);
  assert.ok(st.lastSyncAt !== null && st.lastSyncAt <= Date.now());
  await source.stop();
});

test('initial list failures are retried with backoff until success', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'p1', 'u1'));
  api.failLists = 3;
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  await source.start();
  assert.equal(api.listCalls.length, 4);
  assert.equal(source.stats().listFailures, 3);
  assert.equal(source.synced(), true);
  assert.equal(source.stale(), false, 'a failed initial list is not a sync loss');
  await source.stop();
});

test('lists are paginated and merged', async () => {
  const api = new FakeApi();
  for (let i = 0; i < 7; i++) api.put(mkPod('a', `p${i}`, `u${i}`));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast, pageSize: 3 });
  await source.start();
  assert.equal(source.size, 7);
  assert.deepEqual(
    api.listCalls.map((c) => c.continueToken),
    [undefined, '3', '6'],
  );
  await source.stop();
});

test('watch events: add, status-only modify is silent, real modify, delete', async () => {
  const api = new FakeApi();
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  await source.start();
  await until(() => api.live().length === 1);
  api.put(mkPod('a', 'p1', 'u1', { ready: false }));
  assert.deepEqual(events.map((e) => [e.type, e.pod.ready]), [['upsert', false]]);
  api.touch('u1');
  assert.equal(events.length, 1, 'resourceVersion-only change emits nothing');
  assert.equal(source.get('u1')?.resourceVersion, String(api.rv), 'but the record is refreshed');
  api.put(mkPod('a', 'p1', 'u1', { ready: true }));
  assert.deepEqual(events.map((e) => [e.type, e.pod.ready]), [['upsert', false], ['upsert', true]]);
  api.remove('u1');
  assert.equal(events.at(-1)?.type, 'delete');
  assert.equal(source.get('u1'), undefined);
  api.broadcast('a', 'BOOKMARK', { metadata: { resourceVersion: '999' } });
  assert.equal(events.length, 3);
  await source.stop();
});

test('after a watch error: stale until relist; relist deletes only vanished pods and upserts changes', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'keep', 'u-keep'));
  api.put(mkPod('a', 'gone', 'u-gone'));
  api.put(mkPod('a', 'change', 'u-change', { ip: '10.0.0.5' }));
  api.put(mkPod('a', 'heartbeat', 'u-hb'));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  const lost: unknown[] = [];
  let restored = 0;
  source.onSyncLost((info) => lost.push(info.error));
  source.onSyncRestored(() => restored++);
  await source.start();
  await until(() => api.live().length === 1);
  events.length = 0;

  // The gap: lists fail for a while, the world changes meanwhile.
  api.failLists = 2;
  const err = Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' });
  api.breakWatches(err);
  assert.equal(source.stale(), true);
  assert.equal(source.synced(), false);
  assert.equal(source.hasSynced(), true);
  assert.equal(lost.length, 1);
  assert.equal(source.get('u-gone')?.name, 'gone', 'nothing deleted before a fresh list confirms it');
  api.silently(() => {
    api.remove('u-gone');
    api.put(mkPod('a', 'change', 'u-change', { ip: '10.0.0.6' }));
    api.put(mkPod('a', 'new', 'u-new'));
    api.touch('u-hb');
  });
  await until(() => !source.stale());
  assert.equal(source.synced(), true);
  assert.equal(restored, 1);
  assert.deepEqual(summary(events), ['delete a/gone', 'upsert a/change', 'upsert a/new']);
  assert.equal(source.get('u-keep')?.name, 'keep');
  assert.deepEqual(source.get('u-change')?.podIPs, ['10.0.0.6']);
  const st = source.stats();
  assert.equal(st.watchErrors, 1);
  assert.equal(st.restarts, 1);
  assert.equal(st.listFailures, 2);
  await until(() => api.live().length === 1);
  assert.equal(api.watchCalls.at(-1)?.resourceVersion, String(api.rv));
  await source.stop();
});

test('a recreated pod (same name, new uid) during a gap: delete old uid, upsert new uid', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'sts-0', 'old', { ip: '10.0.0.1' }));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  await source.start();
  await until(() => api.live().length === 1);
  events.length = 0;
  api.silently(() => {
    api.remove('old');
    api.put(mkPod('a', 'sts-0', 'new', { ip: '10.0.0.2' }));
  });
  api.breakWatches(new Error('socket hang up'));
  await until(() => !source.stale() && events.length === 2);
  assert.deepEqual(events.map((e) => `${e.type} ${e.pod.uid}`), ['delete old', 'upsert new']);
  await source.stop();
});

test('410 Gone (in-stream ERROR or HTTP) relists at once', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'p1', 'u1'));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: { initialMs: 10_000, maxMs: 10_000 } });
  await source.start();
  await until(() => api.live().length === 1);
  api.broadcast('a', 'ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
  await until(() => api.listCalls.length === 2 && api.live().length === 1);
  assert.equal(source.stats().goneRelists, 1);
  assert.equal(source.get('u1')?.name, 'p1');
  await source.stop();
});

test('401/403 watch failures back off exponentially and do not reset on a successful list', async () => {
  const api = new FakeApi();
  api.failWatches = 1000;
  const source = new PodSource({
    namespaces: [],
    logger: silent,
    transport: api,
    backoff: { initialMs: 20, maxMs: 80 },
    random: () => 0.5,
  });
  await source.start();
  await new Promise((r) => setTimeout(r, 300));
  // Delays 15, 30, 60, 60, ... (equal jitter at 0.5): about 7 attempts in 300 ms, not hundreds.
  const n = api.watchCalls.length;
  assert.ok(n >= 3 && n <= 9, `watch attempts: ${n}`);
  assert.equal(source.stale(), true);
  assert.equal(source.synced(), false, 'not synced while stale');
  assert.equal(source.hasSynced(), true);
  await source.stop();
});

test('a watch the server keeps closing at once is throttled', async () => {
  const api = new FakeApi();
  api.closeWatchesAtOnce = true;
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: { initialMs: 20, maxMs: 40 } });
  await source.start();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(api.watchCalls.length <= 12, `watch attempts: ${api.watchCalls.length}`);
  assert.equal(api.listCalls.length, 1, 'a clean close resumes from the resourceVersion, no relist');
  assert.equal(source.stale(), false);
  await source.stop();
});

test('watchdog restarts a silent watch from the last resourceVersion; events keep it alive', async () => {
  const api = new FakeApi();
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast, watchdogMs: 60 });
  await source.start();
  await until(() => api.live().length === 1);
  // Activity keeps the watch alive past the watchdog period.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 30));
    api.broadcast('a', 'BOOKMARK', { metadata: { resourceVersion: `b${i}` } });
  }
  assert.equal(source.stats().watchdogRestarts, 0);
  await until(() => source.stats().watchdogRestarts === 1, 1000);
  await until(() => api.watchCalls.length === 2);
  assert.equal(api.watchCalls[1]?.resourceVersion, 'b3');
  assert.equal(api.listCalls.length, 1);
  assert.equal(source.stale(), false);
  await source.stop();
});

test('a watch whose headers never arrive is abandoned after the connect timeout', async () => {
  const api = new FakeApi();
  api.hangWatches = true;
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast, connectTimeoutMs: 30 });
  await source.start();
  await until(() => api.watchCalls.length >= 2, 1000);
  assert.ok(source.stats().watchErrors >= 1);
  await source.stop();
});

test('listener errors (sync and async) are logged and never break the source', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'p1', 'u1'));
  const { logger, lines } = capturingLogger();
  const source = new PodSource({ namespaces: [], logger, transport: api, backoff: fast });
  source.onChange(() => {
    throw new Error('boom');
  });
  source.onChange(async () => {
    throw new Error('async boom');
  });
  const events = collect(source);
  source.onSyncLost(() => {
    throw new Error('lost boom');
  });
  await source.start();
  assert.equal(events.length, 1, 'later listeners still called');
  await until(() => lines.some((l) => String(l['err']).includes('async boom')));
  assert.ok(lines.some((l) => String(l['err']).includes('Error: boom')));
  await until(() => api.live().length === 1);
  api.breakWatches(new Error('reset'));
  await until(() => !source.stale() && api.live().length === 1);
  assert.ok(lines.some((l) => String(l['err']).includes('lost boom')));
  const unsubscribe = source.onChange(() => assert.fail('unsubscribed'));
  unsubscribe();
  api.put(mkPod('a', 'p2', 'u2'));
  assert.equal(events.length, 2);
  await source.stop();
});

test('namespaces: one stream each; a relist of one namespace never deletes another namespace\'s pods', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'pa', 'ua'));
  api.put(mkPod('b', 'pb', 'ub'));
  api.put(mkPod('c', 'pc', 'uc'));
  const source = new PodSource({ namespaces: ['a', 'b', 'a'], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  await source.start();
  assert.deepEqual(summary(events), ['upsert a/pa', 'upsert b/pb']);
  await until(() => api.live().length === 2);
  assert.deepEqual(api.watchCalls.map((w) => w.namespace).sort(), ['a', 'b']);
  events.length = 0;
  // Break only namespace a's watch.
  const wa = api.live().find((w) => w.namespace === 'a');
  assert.ok(wa);
  wa.aborted = true;
  wa.onDone(new Error('reset'));
  await until(() => !source.stale() && api.live().length === 2);
  assert.deepEqual(events, []);
  assert.equal(source.size, 2);
  await source.stop();
});

test('start() waits for every namespace; stop() before sync rejects start()', async () => {
  const api = new FakeApi();
  api.failLists = 1_000_000;
  const source = new PodSource({ namespaces: ['a', 'b'], logger: silent, transport: api, backoff: fast });
  const started = source.start();
  assert.equal(source.start(), started, 'idempotent');
  await until(() => api.listCalls.length >= 4);
  assert.equal(source.synced(), false);
  await source.stop();
  await assert.rejects(started, PodSourceStoppedError);
  const calls = api.listCalls.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(api.listCalls.length, calls, 'no list after stop');
});

test('stop() interrupts a hanging list and a running watch', async () => {
  const api = new FakeApi();
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  await source.start();
  await until(() => api.live().length === 1);
  await source.stop();
  assert.equal(api.live().length, 0, 'watch aborted');

  const hanging: PodTransport = {
    list: () => new Promise<PodListPage>(() => {}),
    watch: () => new Promise<WatchHandle>(() => {}),
  };
  const s2 = new PodSource({ namespaces: [], logger: silent, transport: hanging, backoff: fast });
  const p = s2.start();
  const t0 = Date.now();
  await s2.stop();
  assert.ok(Date.now() - t0 < 500);
  await assert.rejects(p, PodSourceStoppedError);
});

test('a list page that never answers times out and is retried', async () => {
  const api = new FakeApi();
  api.put(mkPod('a', 'p1', 'u1'));
  let first = true;
  const transport: PodTransport = {
    list: (req) => {
      if (first) {
        first = false;
        return new Promise<PodListPage>(() => {});
      }
      return api.list(req);
    },
    watch: (req, onEvent, onDone) => api.watch(req, onEvent, onDone),
  };
  const source = new PodSource({ namespaces: [], logger: silent, transport, backoff: fast, listTimeoutMs: 30 });
  await source.start();
  assert.equal(source.size, 1);
  assert.equal(source.stats().listFailures, 1);
  await source.stop();
});

test('pods without uid/name/namespace are ignored', async () => {
  const api = new FakeApi();
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  await source.start();
  await until(() => api.live().length === 1);
  api.broadcast('a', 'ADDED', { metadata: { name: 'x' } });
  api.broadcast('a', 'DELETED', null);
  api.broadcast('a', 'WHATEVER', {});
  assert.equal(events.length, 0);
  assert.equal(source.size, 0);
  await source.stop();
});

test('constructor requires a kubeConfig or a transport', () => {
  assert.throws(() => new PodSource({ namespaces: [], logger: silent }), /kubeConfig/);
});

test('10,000 pods: paged relist is quick; an unchanged relist emits nothing', async () => {
  const api = new FakeApi();
  for (let i = 0; i < 10_000; i++) api.put(mkPod(`ns${i % 20}`, `p${i}`, `u${i}`, { ip: `10.${i >> 8}.${i & 255}.1` }));
  const source = new PodSource({ namespaces: [], logger: silent, transport: api, backoff: fast });
  const events = collect(source);
  const t0 = performance.now();
  await source.start();
  const ms = performance.now() - t0;
  assert.equal(source.size, 10_000);
  assert.equal(events.length, 10_000);
  assert.ok(ms < 3000, `initial sync took ${ms} ms`);
  await until(() => api.live().length === 1);
  events.length = 0;
  api.breakWatches(new Error('reset'));
  await until(() => source.synced() && api.live().length === 1);
  assert.equal(events.length, 0);
  assert.equal(source.stats().relists, 2);
  await source.stop();
});
