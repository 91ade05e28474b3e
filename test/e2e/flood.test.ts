// Hostile input at scale: 10,000 pods with invalid registration annotations created at once
// against the real API server, while a few valid pods become Ready. The controller must keep
// memory bounded, rate-limit its Warning events, write nothing for the invalid pods, and
// still register the valid ones promptly.
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { eventually, RegistryObserver, startController, type ControllerProcess } from './support.ts';

const NS = 'flood';
const INVALID_PODS = 10_000;
const VALID_PODS = 5;
const PREFIX = '/search_PRE/';
// The event recorder's global bucket (src/events/recorder.ts defaults).
const EVENT_BURST = 100;
const EVENTS_PER_SECOND = 20;
const HEAP_CAP_MB = 160;

let cluster: Cluster;
let api: CoreV1Api;
let observer: RegistryObserver;
let controller: ControllerProcess;

/** Resident set size of a process in MiB, from /proc. */
function rssMb(pid: number): number {
  const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return match === null ? Number.NaN : Number(match[1]) / 1024;
}

async function metric(name: string, labels = ''): Promise<number> {
  const text = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name}${labels} `));
  return line === undefined ? Number.NaN : Number(line.split(' ')[1]);
}

// Three kinds of invalid claim, each refused by annotation parsing before readiness matters.
const BAD_ANNOTATIONS: ReadonlyArray<Record<string, string>> = [
  { 'etcd-registrar.io/service': '../../etc', 'etcd-registrar.io/port': '86' },
  { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '99999' },
  { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/environment': 'PRE\u0000/x', 'etcd-registrar.io/port': '86' },
];

function invalidPod(i: number): V1Pod {
  return {
    metadata: {
      name: `bad-${i}`,
      labels: { kind: 'bad' },
      annotations: { 'etcd-registrar.io/register': 'true', ...BAD_ANNOTATIONS[i % BAD_ANNOTATIONS.length] },
    },
    // No scheduler serves this name: the pods stay Pending and cost only the API server.
    spec: { schedulerName: 'nobody', containers: [{ name: 'app', image: 'x:1' }] },
  };
}

function validPod(i: number, node: string): V1Pod {
  return {
    metadata: {
      name: `good-${i}`,
      labels: { kind: 'good' },
      annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' },
    },
    spec: { nodeName: node, containers: [{ name: 'app', image: 'x:1' }] },
  };
}

/** Runs `task` over 0..count-1 with at most `width` in flight. */
async function pool(count: number, width: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  const worker = async (): Promise<void> => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: width }, worker));
}

/**
 * Creates a pod; a loaded API server (2 cores, the flood itself) may reset a stream, so
 * transport errors are retried and "already exists" after such a retry counts as created.
 */
async function createWithRetry(body: V1Pod): Promise<void> {
  for (let attempt = 1; ; attempt++) {
    try {
      await api.createNamespacedPod({ namespace: NS, body });
      return;
    } catch (err) {
      const status = (err as { code?: unknown }).code;
      if (status === 409 && attempt > 1) return;
      const transient = typeof status !== 'number' || status === 429 || status >= 500;
      if (attempt >= 5 || !transient) throw err;
      await new Promise((resolve) => setTimeout(resolve, 200 * attempt));
    }
  }
}

before(async () => {
  cluster = await startCluster({ nodes: 1 });
  await cluster.createNamespace(NS);
  const kc = new KubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  api = kc.makeApiClient(CoreV1Api);
  observer = new RegistryObserver(cluster.registry.endpoints);
  await observer.watch('/');
  controller = await startController({
    kubeconfig: cluster.kubeconfigPath,
    etcdEndpoints: cluster.registry.endpoints,
    extraArgs: ['--environment', 'PRE', '--owner-id', 'flood', '--lease-ttl', '10s', '--namespaces', NS, '--leader-election', 'false'],
    // A capped heap: running out of it would crash the controller, so finishing the flood
    // proves its memory is bounded, not just that this machine had memory to spare.
    nodeOptions: [`--max-old-space-size=${HEAP_CAP_MB}`],
  });
  await controller.waitReady();
});

after(async () => {
  await controller?.stop();
  await observer?.close();
  await cluster?.stop();
});

describe('a flood of invalid pods', () => {
  it('keeps memory bounded, rate-limits events, writes nothing for them and still registers valid pods', async (t) => {
    const pid = controller.proc.pid;
    const rssBefore = rssMb(pid);
    let rssPeak = rssBefore;
    const sampler = setInterval(() => {
      rssPeak = Math.max(rssPeak, rssMb(pid));
    }, 250);
    const floodStart = Date.now();

    // Valid pods start Ready in the middle of the flood; their Ready condition says when.
    const readyAt = new Map<string, number>();
    let created = 0;
    const flood = pool(INVALID_PODS, 16, async (i) => {
      await createWithRetry(invalidPod(i));
      created++;
    });
    // (A list's remainingItemCount is not set with a label selector, so count here.)
    await eventually('a quarter of the flood created', () => created >= INVALID_PODS / 4, 120_000);
    for (let i = 0; i < VALID_PODS; i++) await createWithRetry(validPod(i, cluster.nodeNames[0] ?? ''));
    const valid = new Map<string, string>(); // pod name -> expected key
    await eventually('the valid pods Ready', async () => {
      const list = await api.listNamespacedPod({ namespace: NS, labelSelector: 'kind=good' });
      for (const pod of list.items) {
        const ready = pod.status?.conditions?.find((c) => c.type === 'Ready' && c.status === 'True');
        const name = pod.metadata?.name ?? '';
        if (ready?.lastTransitionTime !== undefined && pod.status?.podIP !== undefined && !readyAt.has(name)) {
          // Whole seconds, truncated: the latency below is an upper bound (by < 1 s).
          readyAt.set(name, new Date(ready.lastTransitionTime).getTime());
          valid.set(name, `${PREFIX}${pod.status.podIP}-86`);
        }
      }
      return readyAt.size === VALID_PODS;
    }, 120_000);
    await flood;
    const floodSeconds = (Date.now() - floodStart) / 1000;

    await eventually('every valid pod registered', () => {
      const put = new Set(observer.events.filter((e) => e.type === 'put').map((e) => e.key));
      return [...valid.values()].every((key) => put.has(key));
    }, 60_000);
    const latencies = [...valid].map(([name, key]) => {
      const putAt = observer.events.find((e) => e.type === 'put' && e.key === key)?.at ?? Number.NaN;
      return putAt - (readyAt.get(name) ?? Number.NaN);
    });

    // The controller has seen (and audited) every invalid pod exactly once.
    await eventually('all invalid pods audited', () => controller.audits().filter((r) => r.action === 'skip' && (r.reason ?? '').startsWith('invalid registration')).length >= INVALID_PODS, 180_000);
    const skips = controller.audits().filter((r) => r.action === 'skip' && (r.reason ?? '').startsWith('invalid registration'));
    assert.equal(new Set(skips.map((r) => r.podUid)).size, INVALID_PODS);
    assert.equal(skips.length, INVALID_PODS, 'one audit record per invalid pod, not one per event');
    assert.equal(await metric('etcd_registrar_invalid_pods'), INVALID_PODS);
    clearInterval(sampler);

    // Events: within the global token bucket, and most of the 10,000 warnings were dropped.
    // The recorder keeps sending at its pace, so the budget counts up to the end of the listing.
    const events = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', NS, '-o', 'json']);
    const elapsedSeconds = (Date.now() - floodStart) / 1000;
    const items = (JSON.parse(events.stdout) as { items: Array<{ reason: string }> }).items;
    const warnings = items.filter((e) => e.reason === 'InvalidRegistration').length;
    assert.ok(warnings > 0, 'some warnings reach the pods');
    assert.ok(warnings <= EVENT_BURST + EVENTS_PER_SECOND * elapsedSeconds, `${warnings} events in ${elapsedSeconds.toFixed(0)} s`);
    assert.ok((await metric('etcd_registrar_events_total', '{outcome="dropped"}')) > 0);

    // Nothing but the valid pods' keys (and the owner record) was ever written.
    const written = new Set(observer.events.filter((e) => e.type === 'put').map((e) => e.key));
    for (const key of written) {
      assert.ok(key.startsWith('/etcd-registrar/') || [...valid.values()].includes(key), `unexpected write ${key}`);
    }
    assert.ok(controller.proc.isRunning());
    assert.ok((await fetch(`${controller.metricsUrl}/readyz`)).ok);

    t.diagnostic(
      `flood: ${INVALID_PODS} invalid pods created in ${floodSeconds.toFixed(1)} s; controller (heap capped at ${HEAP_CAP_MB} MB) RSS ${rssBefore.toFixed(0)} MB -> peak ${rssPeak.toFixed(0)} MB; ` +
        `${warnings} Warning events in ${elapsedSeconds.toFixed(0)} s; valid pods Ready (s resolution) -> key PUT ${latencies.map((l) => `${l} ms`).join(', ')}`,
    );
    // Bounded: the slim cache and per-pod state of 10,000 pods within the capped heap.
    assert.ok(rssPeak < HEAP_CAP_MB + 200, `RSS peaked at ${rssPeak.toFixed(0)} MB`);
    for (const latency of latencies) assert.ok(latency < 10_000, `valid pod registered ${latency} ms after Ready`);

  });
});
