// PodSource against a real kube-apiserver (test/cluster): no mocks of the API server. Faults
// are real (API server restart, RBAC denial, watchdog on a real quiet watch) or a network
// partition injected in front of the real transport.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startCluster, type Cluster } from '../../test/cluster/cluster.ts';
import { waitFor } from '../../test/cluster/process.ts';
import type { SlimPod } from '../types.ts';
import { kubeListerWatcher, type ListerWatcher, type WatchHandle } from './kube-http.ts';
import type { KubeAccess } from './kube-access.ts';
import { kubeAccessFromFile } from './kube-access-resolve.ts';
import { PodSource, podKind, type PodEvent } from './pod-source.ts';

const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

function podManifest(namespace: string, name: string, labels: Record<string, string>, grace = 1): string {
  return JSON.stringify({
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace, labels },
    spec: {
      terminationGracePeriodSeconds: grace,
      containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] }],
    },
  });
}

/** Collects events; `byName` gives the events of one pod. */
class Recorder {
  events: PodEvent[] = [];
  constructor(source: PodSource) {
    source.onChange((e) => this.events.push(e));
  }
  of(name: string): PodEvent[] {
    return this.events.filter((e) => e.pod.name === name);
  }
  deletes(): string[] {
    return this.events.filter((e) => e.type === 'delete').map((e) => e.pod.name);
  }
}

/** A real transport with a switch that cuts it off, like a network partition. */
function partitionable(inner: ListerWatcher): ListerWatcher & { cut(): void; heal(): void; liveWatches(): number } {
  let cut = false;
  const live = new Set<{ handle: WatchHandle; onDone: (err: unknown) => void }>();
  const refused = (): Error => Object.assign(new Error('connect ECONNREFUSED (partition)'), { code: 'ECONNREFUSED' });
  return {
    liveWatches: () => live.size,
    cut() {
      cut = true;
      for (const w of live) {
        w.handle.abort();
        w.onDone(Object.assign(new Error('read ECONNRESET (partition)'), { code: 'ECONNRESET' }));
      }
      live.clear();
    },
    heal() {
      cut = false;
    },
    async list(req) {
      if (cut) throw refused();
      return inner.list(req);
    },
    async watch(req, onEvent, onDone) {
      if (cut) throw refused();
      let entry: { handle: WatchHandle; onDone: (err: unknown) => void } | undefined;
      let ended = false;
      const handle = await inner.watch(
        req,
        (type, obj) => {
          if (!ended) onEvent(type, obj);
        },
        (err) => {
          if (entry !== undefined) live.delete(entry);
          if (!ended) {
            ended = true;
            onDone(err);
          }
        },
      );
      entry = {
        handle,
        onDone: (err) => {
          if (!ended) {
            ended = true;
            onDone(err);
          }
        },
      };
      live.add(entry);
      return handle;
    },
  };
}

describe('PodSource against a real API server', () => {
  let cluster: Cluster;
  let kc: KubeAccess;
  const sources: PodSource[] = [];

  function newSource(opts: Partial<ConstructorParameters<typeof PodSource>[0]> = {}): PodSource {
    const source = new PodSource({
      kube: kc,
      namespaces: [],
      logger,
      backoff: { baseMs: 100, maxMs: 1000 },
      ...opts,
    });
    sources.push(source);
    return source;
  }

  async function apply(ns: string, name: string, labels: Record<string, string> = { app: 'web' }, grace = 1) {
    await cluster.kubectl(['apply', '-f', '-'], { input: podManifest(ns, name, labels, grace) });
  }

  async function readyIn(source: PodSource, name: string): Promise<SlimPod> {
    return waitFor(
      `${name} Ready in the cache`,
      async () => source.list().find((p) => p.name === name && p.ready && p.podIPs.length > 0),
      { timeoutMs: 20_000, intervalMs: 50 },
    );
  }

  before(async () => {
    cluster = await startCluster();
    kc = await kubeAccessFromFile(cluster.kubeconfigPath);
    await Promise.all(['src-a', 'src-b', 'src-gap', 'src-restart', 'src-rbac', 'src-dog'].map((n) => cluster.createNamespace(n)));
  });

  after(async () => {
    await Promise.all(sources.map((s) => s.stop()));
    await cluster?.stop();
  });

  it('syncs, then sees create, Ready, annotate, terminate and delete as upserts and a delete', async () => {
    await apply('src-a', 'existing');
    const source = newSource();
    const rec = new Recorder(source);
    await source.start();
    assert.equal(source.synced(), true);
    assert.ok(source.list().some((p) => p.name === 'existing'), 'initial list includes the pod');
    assert.ok(source.stats().lastSyncAt !== null);

    await apply('src-a', 'web-1');
    const ready = await readyIn(source, 'web-1');
    assert.equal(ready.namespace, 'src-a');
    assert.deepEqual(ready.namedPorts, { http: 8080 });
    assert.ok(ready.podIPs[0]?.startsWith('10.244.'));
    assert.ok(ready.nodeName.startsWith('kwok-node-'));

    await cluster.kubectl(['annotate', 'pod', 'web-1', '-n', 'src-a', 'etcd-registrar.io/register=true']);
    await waitFor('annotation upsert', async () =>
      rec.of('web-1').some((e) => e.type === 'upsert' && e.pod.annotations['etcd-registrar.io/register'] === 'true'),
      { timeoutMs: 5000, intervalMs: 20 });

    await cluster.kubectl(['delete', 'pod', 'web-1', '-n', 'src-a', '--wait=false']);
    await waitFor('terminating upsert', async () =>
      rec.of('web-1').some((e) => e.type === 'upsert' && e.pod.terminating), { timeoutMs: 5000, intervalMs: 20 });
    await waitFor('delete event', async () => rec.of('web-1').some((e) => e.type === 'delete'), {
      timeoutMs: 15_000,
      intervalMs: 50,
    });
    assert.equal(source.list().some((p) => p.name === 'web-1'), false);
    assert.deepEqual(rec.deletes(), ['web-1'], 'no other pod was ever deleted');
  });

  it('namespaces + label selector restrict the cache', async () => {
    await apply('src-b', 'match', { app: 'web' });
    await apply('src-b', 'other-label', { app: 'db' });
    await apply('src-a', 'other-ns', { app: 'web' });
    const source = newSource({ namespaces: ['src-b'], labelSelector: 'app=web' });
    await source.start();
    await readyIn(source, 'match');
    await apply('src-b', 'match-2', { app: 'web' });
    await readyIn(source, 'match-2');
    const names = source.list().map((p) => p.name).sort();
    assert.deepEqual(names, ['match', 'match-2']);
  });

  it('after a partition: relist deletes exactly the pods gone meanwhile, upserts changes, no false deletes', async () => {
    const ns = 'src-gap';
    await Promise.all(['keep', 'change', 'vanish'].map((n) => apply(ns, n)));
    const transport = partitionable(kubeListerWatcher(kc, podKind, { watchInactivityMs: 120_000 }));
    const source = newSource({ namespaces: [ns], transport });
    const rec = new Recorder(source);
    await source.start();
    await Promise.all(['keep', 'change', 'vanish'].map((n) => readyIn(source, n)));
    rec.events.length = 0;
    await waitFor('watch established', async () => transport.liveWatches() === 1, { timeoutMs: 5000, intervalMs: 20 });

    transport.cut();
    assert.equal(source.stale(), true);
    assert.equal(source.synced(), false);
    assert.equal(source.stats().syncLosses, 1);
    await cluster.kubectl(['delete', 'pod', 'vanish', '-n', ns, '--grace-period=0', '--force']);
    await cluster.kubectl(['label', 'pod', 'change', '-n', ns, 'tier=gold']);
    await apply(ns, 'born');
    await new Promise((r) => setTimeout(r, 500));
    assert.equal(source.get(source.list().find((p) => p.name === 'vanish')?.uid ?? '')?.name, 'vanish',
      'nothing is deleted while the cache is stale');
    assert.deepEqual(rec.deletes(), []);

    transport.heal();
    await waitFor('fresh again', async () => !source.stale(), { timeoutMs: 10_000, intervalMs: 20 });
    assert.equal(source.stats().syncLosses, 1, 'one loss across the failed lists of the partition');
    assert.deepEqual(rec.deletes(), ['vanish']);
    assert.ok(rec.of('change').some((e) => e.type === 'upsert' && e.pod.labels['tier'] === 'gold'));
    assert.ok(rec.of('born').some((e) => e.type === 'upsert'));
    assert.equal(rec.of('keep').length, 0, 'an unchanged pod produces no event at all');
    assert.deepEqual(source.list().map((p) => p.name).sort(), ['born', 'change', 'keep']);
    assert.ok(source.stats().watchErrors >= 1);
    // And the watch works again afterwards.
    await apply(ns, 'after');
    await readyIn(source, 'after');
  });

  it('survives an API server restart without deleting live pods, then keeps watching', async () => {
    const ns = 'src-restart';
    await Promise.all(['r1', 'r2'].map((n) => apply(ns, n)));
    const source = newSource({ namespaces: [ns] });
    const rec = new Recorder(source);
    await source.start();
    await Promise.all(['r1', 'r2'].map((n) => readyIn(source, n)));
    const relistsBefore = source.stats().relists;

    await cluster.restartApiServer();
    await waitFor('relisted after restart', async () => source.stats().relists > relistsBefore && !source.stale(), {
      timeoutMs: 30_000,
      intervalMs: 50,
    });
    assert.deepEqual(rec.deletes(), [], 'no false deletes');
    assert.ok(source.stats().restarts >= 1, JSON.stringify(source.stats()));
    assert.deepEqual(source.list().map((p) => p.name).sort(), ['r1', 'r2']);

    await apply(ns, 'r3');
    await readyIn(source, 'r3');
    await cluster.kubectl(['delete', 'pod', 'r1', '-n', ns, '--grace-period=0', '--force']);
    await waitFor('r1 delete', async () => rec.deletes().includes('r1'), { timeoutMs: 10_000, intervalMs: 20 });
    assert.deepEqual(rec.deletes(), ['r1']);
  });

  it('a ServiceAccount without RBAC backs off until granted, then syncs', async () => {
    const ns = 'src-rbac';
    await apply(ns, 'p');
    await cluster.kubectl(['create', 'serviceaccount', 'registrar', '-n', ns]);
    const saKc = await kubeAccessFromFile(await cluster.serviceAccountKubeconfig(ns, 'registrar'));
    const source = newSource({ kube: saKc, namespaces: [ns], backoff: { baseMs: 200, maxMs: 800 } });
    let synced = false;
    const started = source.start().then(() => {
      synced = true;
    });
    await new Promise((r) => setTimeout(r, 2000));
    const failures = source.stats().listFailures;
    assert.equal(synced, false);
    assert.ok(failures >= 2 && failures <= 8, `list attempts in 2 s with backoff 200..800 ms: ${failures}`);

    await cluster.kubectl(['create', 'role', 'pods', '-n', ns, '--verb=get,list,watch', '--resource=pods']);
    await cluster.kubectl(['create', 'rolebinding', 'pods', '-n', ns, '--role=pods', `--serviceaccount=${ns}:registrar`]);
    await started;
    await readyIn(source, 'p');
  });

  it('the watchdog restarts a quiet real watch from its resourceVersion, without a relist', async () => {
    const ns = 'src-dog';
    const source = newSource({ namespaces: [ns], watchdogMs: 1500 });
    await source.start();
    await waitFor('watchdog restart', async () => source.stats().watchdogRestarts >= 1, { timeoutMs: 10_000, intervalMs: 50 });
    assert.equal(source.stats().relists, 1);
    await apply(ns, 'late');
    await readyIn(source, 'late');
    assert.equal(source.stale(), false);
  });
});
