// The namespace kind on the reflector, against the in-memory ListerWatcher (the loop itself is
// covered by reflector.test.ts; the real API server by test/e2e/grants.test.ts).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import type { V1Namespace } from '@kubernetes/client-node';
import { NamespaceSource, type NamespaceEvent } from './namespace-source.ts';
import { FakeApi, silent, until } from './testing.ts';

const ANNOTATION = 'etcd-registrar.io/allowed-services';

function ns(name: string, value?: string, labels: Record<string, string> = {}): V1Namespace {
  return { metadata: { name, labels, annotations: value === undefined ? { other: 'x' } : { [ANNOTATION]: value } } };
}

function setup(api: FakeApi<V1Namespace>, pageSize?: number): { source: NamespaceSource; events: NamespaceEvent[] } {
  const source = new NamespaceSource({
    transport: api,
    annotation: ANNOTATION,
    logger: silent,
    backoff: { baseMs: 1, maxMs: 5 },
    random: () => 0.5,
    ...(pageSize === undefined ? {} : { pageSize }),
  });
  const events: NamespaceEvent[] = [];
  source.onChange((event) => events.push(event));
  return { source, events };
}

describe('NamespaceSource', () => {
  it('lists every page, then reports only annotation changes from the watch', async () => {
    const api = new FakeApi<V1Namespace>();
    api.put(ns('team-a', 'search'));
    api.put(ns('team-b'));
    const { source, events } = setup(api, 1);
    assert.equal(source.synced(), false);
    await source.start();
    assert.equal(source.synced(), true);
    assert.equal(api.listCalls.length, 2, 'two pages');
    assert.deepEqual(events, [
      { type: 'upsert', name: 'team-a', value: 'search' },
      { type: 'upsert', name: 'team-b', value: undefined },
    ]);
    await until('watch opened', () => api.live().length === 1);
    assert.equal(api.current.resourceVersion, String(api.rv));
    events.length = 0;
    api.put(ns('team-a', 'search', { tier: 'gold' })); // labels changed: nothing to report
    api.put(ns('team-b', 'search'));
    api.put(ns('team-c'));
    api.remove('team-a');
    assert.deepEqual(events, [
      { type: 'upsert', name: 'team-b', value: 'search' },
      { type: 'upsert', name: 'team-c', value: undefined },
      { type: 'delete', name: 'team-a' },
    ]);
    assert.equal(source.annotation('team-b'), 'search');
    assert.equal(source.get('team-a'), undefined);
    // A normal close resumes from the last resourceVersion, without a relist.
    api.current.onDone(null);
    await until('watch reopened', () => api.watchCalls.length === 2 && api.live().length === 1);
    assert.equal(api.current.resourceVersion, String(api.rv));
    assert.equal(api.listCalls.length, 2);
    await source.stop();
  });

  it('goes stale on a watch error, keeps the last grants, and relists reporting only differences', async () => {
    const api = new FakeApi<V1Namespace>();
    api.put(ns('team-a', 'search'));
    api.put(ns('team-b', 'web'));
    const { source, events } = setup(api);
    await source.start();
    await until('watch opened', () => api.live().length === 1);
    events.length = 0;
    api.failLists = 1;
    api.silently(() => {
      api.remove('team-b');
      api.put(ns('team-c', 'x'));
    });
    api.current.onEvent('ERROR', { code: 500, message: 'boom' });
    assert.equal(source.synced(), false);
    assert.equal(source.annotation('team-b'), 'web', 'the stale cache keeps what it knew');
    await until('relisted', () => source.synced());
    assert.equal(api.listCalls.length, 3);
    assert.deepEqual(events, [
      { type: 'delete', name: 'team-b' },
      { type: 'upsert', name: 'team-c', value: 'x' },
    ]);
    await until('watch reopened', () => api.live().length === 1);
    assert.equal(api.current.resourceVersion, String(api.rv));
    await source.stop();
  });

  it('retries the first list until it succeeds; stop() before that rejects start()', async () => {
    const api = new FakeApi<V1Namespace>();
    api.failLists = 2;
    const { source } = setup(api);
    await source.start();
    assert.equal(api.listCalls.length, 3);
    await source.stop();

    const never = new FakeApi<V1Namespace>();
    never.failLists = 1000;
    const { source: blocked } = setup(never);
    const started = blocked.start();
    await until('a few attempts', () => never.listCalls.length >= 2);
    await blocked.stop();
    await assert.rejects(started, /namespace source stopped before its cache synced/);
  });
});
