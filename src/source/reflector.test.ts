// The list/watch loop (docs/decisions/0020) against the in-memory ListerWatcher (testing.ts),
// over a minimal kind: ConfigMap-like items keyed by namespace/name whose `text` is the only
// thing that counts as a change. The kinds' own rules are in pod-source.test.ts and
// value-source.test.ts; the real API server is exercised in pod-source.int.test.ts.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { ListerWatcher, RawListPage, WatchHandle } from './kube-http.ts';
import { Reflector, SourceStoppedError, type Kind, type ReflectorOptions } from './reflector.ts';
import { FakeApi, capturingLogger, fast, silent, until, type FakeObject } from './testing.ts';

interface ItemObject extends FakeObject {
  data?: { text?: string };
}

interface Item {
  readonly key: string;
  readonly text: string;
  readonly resourceVersion: string;
}

type ItemEvent = { readonly type: 'upsert' | 'delete'; readonly key: string; readonly text: string };

const itemKind: Kind<Item, ItemEvent> = {
  what: 'item',
  apiPath: '/api/v1',
  resource: 'configmaps',
  valueOf: (object) => {
    const { metadata, data } = object as ItemObject;
    if (metadata?.namespace === undefined || metadata.name === undefined) return undefined;
    return { key: `${metadata.namespace}/${metadata.name}`, text: data?.text ?? '', resourceVersion: metadata.resourceVersion ?? '' };
  },
  keyOf: (item) => item.key,
  changed: (a, b) => a.text !== b.text,
  eventOf: (type, { key, text }) => ({ type, key, text }),
};

function item(namespace: string, name: string, text = 'v1'): ItemObject {
  return { metadata: { namespace, name }, data: { text } };
}

function reflector(transport: ListerWatcher, opts: Partial<ReflectorOptions> = {}): Reflector<Item, ItemEvent> {
  return new Reflector(itemKind, { logger: silent, transport, backoff: fast, ...opts });
}

function collect(source: Reflector<Item, ItemEvent>): ItemEvent[] {
  const events: ItemEvent[] = [];
  source.onChange((e) => events.push(e));
  return events;
}

const summary = (events: ItemEvent[]): string[] => events.map((e) => `${e.type} ${e.key}`).sort();

test('start resolves after the initial list; watch starts at the list RV with a 5-10 min server timeout', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  api.put(item('b', 'y'));
  const source = reflector(api, { labelSelector: 'app=web' });
  const events = collect(source);
  assert.equal(source.synced(), false);
  await source.start();
  assert.equal(source.synced(), true);
  assert.equal(source.stale(), false);
  assert.deepEqual(summary(events), ['upsert a/x', 'upsert b/y']);
  assert.equal(source.get('a/x')?.text, 'v1');
  assert.equal(source.get('b/y')?.text, 'v1');
  assert.equal(source.list().length, 2);
  assert.equal(source.size, 2);
  assert.equal(api.listCalls[0]?.labelSelector, 'app=web');
  await until('the watch', () => api.watchCalls.length === 1);
  assert.equal(api.watchCalls[0]?.resourceVersion, String(api.rv));
  assert.equal(api.watchCalls[0]?.namespace, undefined);
  const t = api.watchCalls[0]?.timeoutSeconds ?? 0;
  assert.ok(t >= 300 && t < 600, String(t));
  const st = source.stats();
  assert.equal(st.objects, 2);
  assert.equal(st.relists, 1);
  assert.ok(st.lastSyncAt !== null && st.lastSyncAt <= Date.now());
  await source.stop();
});

test('initial list failures are retried with backoff until success', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  api.failLists = 3;
  const source = reflector(api);
  await source.start();
  assert.equal(api.listCalls.length, 4);
  assert.equal(source.stats().listFailures, 3);
  assert.equal(source.synced(), true);
  assert.equal(source.stale(), false, 'a failed initial list is not a sync loss');
  assert.equal(source.stats().syncLosses, 0);
  await source.stop();
});

test('lists are paginated and merged', async () => {
  const api = new FakeApi<ItemObject>();
  for (let i = 0; i < 7; i++) api.put(item('a', `x${i}`));
  const source = reflector(api, { pageSize: 3 });
  await source.start();
  assert.equal(source.size, 7);
  assert.deepEqual(api.listCalls.map((c) => c.continueToken), [undefined, '3', '6']);
  await source.stop();
});

test('watch events: add, an unchanged record is silent but kept, change, delete, bookmark, unknown types', async () => {
  const api = new FakeApi<ItemObject>();
  const source = reflector(api);
  const events = collect(source);
  await source.start();
  await until('the watch', () => api.live().length === 1);
  api.put(item('a', 'x', 'one'));
  api.touch('a/x');
  assert.deepEqual(events, [{ type: 'upsert', key: 'a/x', text: 'one' }], 'a resourceVersion-only change emits nothing');
  assert.equal(source.get('a/x')?.resourceVersion, String(api.rv), 'but the record is refreshed');
  api.put(item('a', 'x', 'two'));
  api.remove('a/x');
  assert.deepEqual(events.slice(1), [{ type: 'upsert', key: 'a/x', text: 'two' }, { type: 'delete', key: 'a/x', text: 'two' }]);
  assert.equal(source.get('a/x'), undefined);
  // A delete of an object the cache never held, objects it does not keep, bookmarks and
  // unknown types change nothing.
  api.broadcast('a', 'DELETED', item('a', 'never'));
  api.broadcast('a', 'ADDED', { metadata: { name: 'no-namespace' } });
  api.broadcast('a', 'DELETED', null);
  api.broadcast('a', 'WHATEVER', item('a', 'y'));
  assert.equal(events.length, 3);
  assert.equal(source.size, 0);
  api.broadcast('a', 'BOOKMARK', { metadata: { resourceVersion: '999' } });
  api.current.onDone(null);
  await until('the watch resumed', () => api.watchCalls.length === 2);
  assert.equal(api.watchCalls[1]?.resourceVersion, '999', 'bookmarks advance the resourceVersion');
  assert.equal(api.listCalls.length, 1, 'a clean close resumes without a relist');
  await source.stop();
});

test('after a watch error: stale until relist; relist deletes only vanished objects and upserts changes', async () => {
  const api = new FakeApi<ItemObject>();
  for (const name of ['keep', 'gone', 'change', 'heartbeat']) api.put(item('a', name));
  const { logger, lines } = capturingLogger();
  const source = reflector(api, { logger });
  const events = collect(source);
  await source.start();
  await until('the watch', () => api.live().length === 1);
  events.length = 0;

  // The gap: lists fail for a while, the world changes meanwhile.
  api.failLists = 2;
  api.breakWatches(Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' }));
  assert.equal(source.stale(), true);
  assert.equal(source.synced(), false);
  assert.equal(source.hasSynced(), true);
  assert.equal(source.get('a/gone')?.text, 'v1', 'nothing deleted before a fresh list confirms it');
  api.silently(() => {
    api.remove('a/gone');
    api.put(item('a', 'change', 'v2'));
    api.put(item('a', 'new'));
    api.touch('a/heartbeat');
  });
  await until('fresh again', () => !source.stale());
  assert.equal(source.synced(), true);
  assert.deepEqual(summary(events), ['delete a/gone', 'upsert a/change', 'upsert a/new']);
  assert.equal(source.get('a/change')?.text, 'v2');
  const st = source.stats();
  assert.equal(st.watchErrors, 1);
  assert.equal(st.restarts, 1);
  assert.equal(st.listFailures, 2);
  assert.equal(st.syncLosses, 1, 'one loss, however many lists failed after it');
  assert.equal(lines.filter((l) => l['msg'] === 'item cache fresh again').length, 1);
  await until('the watch again', () => api.live().length === 1);
  assert.equal(api.watchCalls.at(-1)?.resourceVersion, String(api.rv));
  await source.stop();
});

test('410 Gone (in-stream ERROR or HTTP) relists at once', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  const source = reflector(api, { backoff: { baseMs: 10_000, maxMs: 10_000 } });
  await source.start();
  await until('the watch', () => api.live().length === 1);
  api.broadcast('a', 'ERROR', { kind: 'Status', code: 410, reason: 'Expired', message: 'too old resource version' });
  await until('relisted', () => api.listCalls.length === 2 && api.live().length === 1);
  api.breakWatches(Object.assign(new Error('Gone'), { statusCode: 410 }));
  // A second 410 in a row waits out the backoff (10 s here): no third list soon.
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(api.listCalls.length, 2);
  assert.equal(source.stats().goneRelists, 2);
  assert.equal(source.get('a/x')?.text, 'v1');
  await source.stop();
});

test('401/403 watch failures back off exponentially and do not reset on a successful list', async () => {
  const api = new FakeApi<ItemObject>();
  api.failWatches = 1000;
  const source = reflector(api, { backoff: { baseMs: 20, maxMs: 80 }, random: () => 0.5 });
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
  const api = new FakeApi<ItemObject>();
  api.closeWatchesAtOnce = true;
  const { logger, lines } = capturingLogger();
  const source = reflector(api, { backoff: { baseMs: 20, maxMs: 40 }, logger });
  await source.start();
  await new Promise((r) => setTimeout(r, 200));
  assert.ok(api.watchCalls.length <= 12, `watch attempts: ${api.watchCalls.length}`);
  assert.equal(api.listCalls.length, 1, 'a clean close resumes from the resourceVersion, no relist');
  assert.equal(source.stale(), false);
  // Each clean end is counted and logged at debug level with the resourceVersion it resumes from.
  const closures = source.stats().serverClosures;
  assert.ok(closures >= 2 && closures >= api.watchCalls.length - 1, `closures ${closures}, watches ${api.watchCalls.length}`);
  const ended = lines.filter((l) => l['msg'] === 'item watch ended by the server; resuming');
  assert.ok(ended.length >= 2, `debug lines: ${ended.length}`);
  assert.equal(ended[0]?.['level'], 20);
  assert.equal(ended[0]?.['resourceVersion'], api.watchCalls[1]?.resourceVersion);
  await source.stop();
});

test('watchdog restarts a silent watch from the last resourceVersion; events keep it alive', async () => {
  const api = new FakeApi<ItemObject>();
  const source = reflector(api, { watchdogMs: 60 });
  await source.start();
  await until('the watch', () => api.live().length === 1);
  // Activity keeps the watch alive past the watchdog period.
  for (let i = 0; i < 4; i++) {
    await new Promise((r) => setTimeout(r, 30));
    api.broadcast('a', 'BOOKMARK', { metadata: { resourceVersion: `b${i}` } });
  }
  assert.equal(source.stats().watchdogRestarts, 0);
  await until('a watchdog restart', () => source.stats().watchdogRestarts === 1, 1000);
  await until('the watch again', () => api.watchCalls.length === 2);
  assert.equal(api.watchCalls[1]?.resourceVersion, 'b3');
  assert.equal(api.listCalls.length, 1);
  assert.equal(source.stale(), false);
  await source.stop();
});

test('a watch whose headers never arrive is abandoned after the connect timeout', async () => {
  const api = new FakeApi<ItemObject>();
  api.hangWatches = true;
  const source = reflector(api, { connectTimeoutMs: 30 });
  await source.start();
  await until('a second watch', () => api.watchCalls.length >= 2, 1000);
  assert.ok(source.stats().watchErrors >= 1);
  await source.stop();
});

test('listener errors (sync and async) are logged and never break the source', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  const { logger, lines } = capturingLogger();
  const source = reflector(api, { logger });
  source.onChange(() => {
    throw new Error('boom');
  });
  source.onChange(async () => {
    throw new Error('async boom');
  });
  const events = collect(source);
  await source.start();
  assert.equal(events.length, 1, 'later listeners still called');
  await until('the async error logged', () => lines.some((l) => String(l['err']).includes('async boom')));
  assert.ok(lines.some((l) => String(l['err']).includes('Error: boom') && l['msg'] === 'item listener failed'));
  await until('the watch', () => api.live().length === 1);
  const unsubscribe = source.onChange(() => assert.fail('unsubscribed'));
  unsubscribe();
  api.put(item('a', 'y'));
  assert.equal(events.length, 2);
  await source.stop();
});

test('namespaces: one stream each; a relist of one namespace never deletes another namespace\'s objects', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  api.put(item('b', 'y'));
  api.put(item('c', 'z'));
  const source = reflector(api, { namespaces: ['a', 'b', 'a', ''] });
  const events = collect(source);
  await source.start();
  assert.deepEqual(summary(events), ['upsert a/x', 'upsert b/y']);
  await until('two watches', () => api.live().length === 2);
  assert.deepEqual(api.watchCalls.map((w) => w.namespace).sort(), ['a', 'b']);
  events.length = 0;
  // Break only namespace a's watch.
  const wa = api.live().find((w) => w.namespace === 'a');
  assert.ok(wa);
  wa.aborted = true;
  wa.onDone(new Error('reset'));
  assert.equal(source.stale(), true);
  await until('fresh again', () => !source.stale() && api.live().length === 2);
  assert.deepEqual(events, []);
  assert.equal(source.size, 2);
  assert.equal(source.get('b/y')?.text, 'v1');
  await source.stop();
});

test('start() waits for every namespace; stop() before sync rejects start()', async () => {
  const api = new FakeApi<ItemObject>();
  api.failLists = 1_000_000;
  const source = reflector(api, { namespaces: ['a', 'b'] });
  const started = source.start();
  assert.equal(source.start(), started, 'idempotent');
  await until('a few lists', () => api.listCalls.length >= 4);
  assert.equal(source.synced(), false);
  await source.stop();
  await assert.rejects(started, (err: unknown) => err instanceof SourceStoppedError && /item source stopped before its cache synced/.test(err.message));
  const calls = api.listCalls.length;
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(api.listCalls.length, calls, 'no list after stop');
  await assert.rejects(source.start(), SourceStoppedError, 'no start after stop');
});

test('stop() interrupts a hanging list and a running watch', async () => {
  const api = new FakeApi<ItemObject>();
  const source = reflector(api);
  await source.start();
  await until('the watch', () => api.live().length === 1);
  await source.stop();
  assert.equal(api.live().length, 0, 'watch aborted');

  const hanging: ListerWatcher = {
    list: () => new Promise<RawListPage>(() => {}),
    watch: () => new Promise<WatchHandle>(() => {}),
  };
  const s2 = reflector(hanging);
  const p = s2.start();
  const t0 = Date.now();
  await s2.stop();
  assert.ok(Date.now() - t0 < 500);
  await assert.rejects(p, SourceStoppedError);
});

test('a list page that never answers times out and is retried', async () => {
  const api = new FakeApi<ItemObject>();
  api.put(item('a', 'x'));
  let first = true;
  const transport: ListerWatcher = {
    list: (req) => {
      if (!first) return api.list(req);
      first = false;
      return new Promise<RawListPage>(() => {});
    },
    watch: (req, onEvent, onDone) => api.watch(req, onEvent, onDone),
  };
  const source = reflector(transport, { listTimeoutMs: 30 });
  await source.start();
  assert.equal(source.size, 1);
  assert.equal(source.stats().listFailures, 1);
  await source.stop();
});

test('the constructor requires a kube access or a transport', () => {
  assert.throws(() => new Reflector(itemKind, { logger: silent }), /item source needs a kube access/);
});
