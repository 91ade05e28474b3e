// kube-http against a real kube-apiserver (test/cluster): list pages, watch streams and their
// error paths, with the credentials of a real kubeconfig (the direct path, a rotating token
// file, and the client-node fallback).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CoreV1Api } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../../test/cluster/cluster.ts';
import { waitFor } from '../../test/cluster/process.ts';
import type { KubeAccess } from './kube-access.ts';
import { clientNodeAccess, sharedConnectionKubeConfig } from './kube-access-client-node.ts';
import { kubeAccessFromFile, resolveKubeAccess } from './kube-access-resolve.ts';
import { KubeHttpError, kubeListerWatcher, listPage, statusCodeOf, watchStream } from './kube-http.ts';

const NS = 'kube-http';
const PATH = `/api/v1/namespaces/${NS}/configmaps`;

interface Recorded {
  events: { type: string; object: { metadata?: { name?: string; resourceVersion?: string; creationTimestamp?: unknown } } }[];
  done: unknown[];
  handle: { abort(): void };
}

/** Opens a watch and records its events and every onDone call. */
async function record(kc: KubeAccess, path: string, req: { resourceVersion: string; timeoutSeconds?: number; inactivityMs?: number; labelSelector?: string }): Promise<Recorded> {
  const events: Recorded['events'] = [];
  const done: unknown[] = [];
  const handle = await watchStream(
    kc,
    path,
    { timeoutSeconds: 60, inactivityMs: 60_000, ...req },
    (type, object) => events.push({ type, object: object as Recorded['events'][number]['object'] }),
    (err) => done.push(err),
  );
  return { events, done, handle };
}

const until = (what: string, check: () => boolean, timeoutMs = 10_000): Promise<true> =>
  waitFor(what, async () => (check() ? true : undefined), { timeoutMs, intervalMs: 10 });

describe('kube-http against a real API server', () => {
  let cluster: Cluster;
  let kc: KubeAccess;
  let core: CoreV1Api;
  const open: { abort(): void }[] = [];

  const configMap = (name: string, labels: Record<string, string> = {}) =>
    core.createNamespacedConfigMap({ namespace: NS, body: { metadata: { name, labels }, data: { text: 'héllo wörld ✓' } } });

  before(async () => {
    cluster = await startCluster({ nodes: 1 });
    kc = await kubeAccessFromFile(cluster.kubeconfigPath);
    const client = await sharedConnectionKubeConfig();
    client.loadFromFile(cluster.kubeconfigPath);
    core = client.makeApiClient(CoreV1Api);
    await cluster.createNamespace(NS);
  });

  after(async () => {
    for (const h of open) h.abort();
    await cluster?.stop();
  });

  it('lists in pages: continue tokens, one resourceVersion, label selector, plain JSON items', async () => {
    await Promise.all(Array.from({ length: 7 }, (_, i) => configMap(`page-${i}`, { set: i % 2 === 0 ? 'even' : 'odd' })));
    const names: string[] = [];
    const versions = new Set<string>();
    let continueToken: string | undefined;
    let pages = 0;
    do {
      const page = await listPage(kc, PATH, { limit: 3, continueToken, labelSelector: 'set' });
      pages++;
      assert.ok(page.items.length <= 3);
      for (const item of page.items) names.push((item as { metadata: { name: string } }).metadata.name);
      versions.add(page.resourceVersion);
      continueToken = page.continueToken;
    } while (continueToken !== undefined);
    assert.equal(pages, 3);
    assert.deepEqual(names.sort(), Array.from({ length: 7 }, (_, i) => `page-${i}`));
    assert.equal(versions.size, 1, 'every page is from the same snapshot');
    assert.match([...versions][0] ?? '', /^\d+$/);

    const even = await listPage(kc, PATH, { limit: 100, continueToken: undefined, labelSelector: 'set=even' });
    assert.deepEqual(even.items.map((i) => (i as { metadata: { name: string } }).metadata.name).sort(), ['page-0', 'page-2', 'page-4', 'page-6']);
    assert.equal(even.continueToken, undefined);
    const first = even.items[0] as { metadata: { creationTimestamp: unknown }; data: { text: string } };
    assert.equal(typeof first.metadata.creationTimestamp, 'string', 'raw JSON, not typed models');
    assert.equal(first.data.text, 'héllo wörld ✓');
  });

  it('a list that outlives its timeoutMs is aborted with a TimeoutError', async () => {
    await assert.rejects(listPage(kc, PATH, { limit: 500, continueToken: undefined, timeoutMs: 1 }), { name: 'TimeoutError' });
  });

  it('a denied list fails with the status code and the API server message', async () => {
    await cluster.kubectl(['create', 'serviceaccount', 'nobody', '-n', NS]);
    const denied = await kubeAccessFromFile(await cluster.serviceAccountKubeconfig(NS, 'nobody'));
    const err = await listPage(denied, PATH, { limit: 10, continueToken: undefined }).then(() => undefined, (e: unknown) => e);
    assert.ok(err instanceof KubeHttpError);
    assert.equal(statusCodeOf(err), 403);
    assert.match(err.message, /configmaps is forbidden: User "system:serviceaccount:kube-http:nobody"/);

    // A watch too: onDone once with the status code; the promise resolves (client-node's contract).
    const w = await record(denied, PATH, { resourceVersion: '' });
    assert.equal(w.done.length, 1);
    assert.equal(statusCodeOf(w.done[0]), 403);
    assert.deepEqual(w.events, []);
  });

  it('a rotated token file takes effect once the token in hand is a minute old, on lists and watches', async () => {
    // A kubeconfig whose user reads its token from a (relative) file, as a bound service-account
    // token is: first a token without rights, then one of a reader.
    await cluster.kubectl(['create', 'serviceaccount', 'rotating', '-n', NS]);
    await cluster.kubectl(['create', 'serviceaccount', 'reader', '-n', NS]);
    await cluster.kubectl(['create', 'rolebinding', 'reader', '--clusterrole=view', `--serviceaccount=${NS}:reader`, '-n', NS]);
    const token = async (sa: string): Promise<string> => (await cluster.kubectl(['create', 'token', sa, '-n', NS])).stdout.trim();
    const saConfig = await cluster.serviceAccountKubeconfig(NS, 'rotating');
    const dir = join(saConfig, '..');
    const tokenPath = join(dir, 'rotating.token');
    await writeFile(tokenPath, `${await token('rotating')}\n`);
    const text = (await readFile(saConfig, 'utf8')).replace(/^    token: .*$/m, '    tokenFile: rotating.token');
    const path = join(dir, 'rotating.kubeconfig');
    await writeFile(path, text);
    let now = 0;
    const { access: rotating, path: via } = await resolveKubeAccess({ kubeconfig: path, env: {}, now: () => now });
    assert.equal(via, 'direct');
    assert.equal(statusCodeOf(await listPage(rotating, PATH, { limit: 10, continueToken: undefined }).then(() => undefined, (e: unknown) => e)), 403);

    await writeFile(tokenPath, `${await token('reader')}\n`);
    now += 30_000;
    assert.equal(statusCodeOf(await listPage(rotating, PATH, { limit: 10, continueToken: undefined }).then(() => undefined, (e: unknown) => e)), 403, 'within the minute: the token in hand');
    now += 31_000;
    const page = await listPage(rotating, PATH, { limit: 10, continueToken: undefined });
    const watch = await record(rotating, PATH, { resourceVersion: page.resourceVersion });
    open.push(watch.handle);
    await configMap('after-rotation');
    await until('watch with the new credentials sees after-rotation', () => watch.events.some((e) => e.object.metadata?.name === 'after-rotation'));
    assert.deepEqual(watch.done, []);
  });

  it('watches from a resourceVersion: replays later changes, then streams new ones', async () => {
    const { resourceVersion } = await listPage(kc, PATH, { limit: 1, continueToken: undefined });
    await configMap('w-1');
    await core.deleteNamespacedConfigMap({ name: 'w-1', namespace: NS });
    const w = await record(kc, PATH, { resourceVersion });
    open.push(w.handle);
    await until('replayed ADDED and DELETED of w-1', () => w.events.filter((e) => e.object.metadata?.name === 'w-1').length === 2);
    assert.deepEqual(w.events.filter((e) => e.object.metadata?.name === 'w-1').map((e) => e.type), ['ADDED', 'DELETED']);

    await configMap('w-2');
    await until('ADDED w-2', () => w.events.some((e) => e.type === 'ADDED' && e.object.metadata?.name === 'w-2'));
    const added = w.events.find((e) => e.object.metadata?.name === 'w-2');
    assert.equal(typeof added?.object.metadata?.creationTimestamp, 'string');
    assert.match(added?.object.metadata?.resourceVersion ?? '', /^\d+$/);

    // Resume from the resourceVersion of the last event: nothing is repeated, the next change arrives.
    const lastRv = w.events.at(-1)?.object.metadata?.resourceVersion ?? '';
    w.handle.abort();
    const resumed = await record(kc, PATH, { resourceVersion: lastRv });
    open.push(resumed.handle);
    await configMap('w-3');
    await until('ADDED w-3 on the resumed watch', () => resumed.events.some((e) => e.object.metadata?.name === 'w-3'));
    assert.deepEqual(resumed.events.filter((e) => e.type !== 'BOOKMARK').map((e) => e.object.metadata?.name), ['w-3']);
    assert.deepEqual(resumed.done, []);
  });

  it('the ListerWatcher of a resource: per-namespace collection, field selector on list and watch', async () => {
    const lw = kubeListerWatcher(kc, { apiPath: '/api/v1', resource: 'configmaps' }, { watchInactivityMs: 60_000 });
    await Promise.all([configMap('fs-a'), configMap('fs-b')]);
    const select = { namespace: NS, labelSelector: undefined, fieldSelector: 'metadata.name=fs-a' };
    const page = await lw.list({ ...select, limit: 100, continueToken: undefined });
    assert.deepEqual(page.items.map((i) => (i as { metadata: { name: string } }).metadata.name), ['fs-a']);
    const seen: string[] = [];
    const done: unknown[] = [];
    const handle = await lw.watch(
      { ...select, resourceVersion: page.resourceVersion, timeoutSeconds: 60 },
      (type, object) => seen.push(`${type} ${(object as { metadata?: { name?: string } }).metadata?.name ?? ''}`),
      (err) => done.push(err),
    );
    open.push(handle);
    await core.patchNamespacedConfigMap({ name: 'fs-b', namespace: NS, body: [{ op: 'add', path: '/data/n', value: '1' }] });
    await core.patchNamespacedConfigMap({ name: 'fs-a', namespace: NS, body: [{ op: 'add', path: '/data/n', value: '1' }] });
    await until('MODIFIED fs-a', () => seen.includes('MODIFIED fs-a'));
    assert.deepEqual(seen.filter((e) => !e.startsWith('BOOKMARK')), ['MODIFIED fs-a'], 'fs-b is outside the selection');
    assert.deepEqual(done, []);
  });

  it('abort ends the watch: onDone exactly once with an AbortError, no events after', async () => {
    const { resourceVersion } = await listPage(kc, PATH, { limit: 1, continueToken: undefined });
    const w = await record(kc, PATH, { resourceVersion });
    w.handle.abort();
    await until('onDone after abort', () => w.done.length === 1);
    assert.equal((w.done[0] as Error).name, 'AbortError');
    await configMap('after-abort');
    // The creation is visible on a fresh watch, so the aborted one had every chance to see it.
    const check = await record(kc, PATH, { resourceVersion });
    open.push(check.handle);
    await until('fresh watch sees after-abort', () => check.events.some((e) => e.object.metadata?.name === 'after-abort'));
    w.handle.abort();
    assert.deepEqual(w.events, []);
    assert.equal(w.done.length, 1);
  });

  it('the server ending the watch (timeoutSeconds) is onDone(null), once', async () => {
    const { resourceVersion } = await listPage(kc, PATH, { limit: 1, continueToken: undefined });
    const started = Date.now();
    const w = await record(kc, PATH, { resourceVersion, timeoutSeconds: 1 });
    await until('server closed the watch', () => w.done.length === 1);
    assert.equal(w.done[0], null);
    assert.ok(Date.now() - started >= 900, 'not before timeoutSeconds');
    w.handle.abort();
    assert.equal(w.done.length, 1, 'abort after the end does not call onDone again');
  });

  it('a silent watch ends with a TimeoutError after inactivityMs', async () => {
    const { resourceVersion } = await listPage(kc, PATH, { limit: 1, continueToken: undefined });
    const w = await record(kc, PATH, { resourceVersion, inactivityMs: 700 });
    await until('inactivity timeout', () => w.done.length === 1);
    const err = w.done[0] as Error;
    assert.ok(err instanceof Error);
    assert.equal(err.name, 'TimeoutError');
  });
  it('the client-node fallback serves lists, watches and errors alike', async () => {
    const fallback = await clientNodeAccess({ files: [cluster.kubeconfigPath] });
    const page = await listPage(fallback, PATH, { limit: 1, continueToken: undefined });
    const w = await record(fallback, PATH, { resourceVersion: page.resourceVersion });
    open.push(w.handle);
    await configMap('via-client-node');
    await until('the fallback watch sees via-client-node', () => w.events.some((e) => e.object.metadata?.name === 'via-client-node'));
    const denied = await clientNodeAccess({ files: [await cluster.serviceAccountKubeconfig(NS, 'nobody')] });
    assert.equal(statusCodeOf(await listPage(denied, PATH, { limit: 1, continueToken: undefined }).then(() => undefined, (e: unknown) => e)), 403);
  });
});
