// etcd-side faults (issue 14), against a real etcd: the backend quota exceeded (NOSPACE
// alarm), and compaction of the revisions the controller read. The controller runs as users
// run it; pods come from the real API server; etcd is inspected with our own client and
// repaired with etcdctl, as an operator would.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { startEtcd, type EtcdServer } from '../cluster/etcd.ts';
import { toolPath } from '../cluster/tools.ts';
import { eventually, metricValue, RegistryObserver, startController, waitPodReadyIp, type ControllerProcess } from './support.ts';

const run = promisify(execFile);
const NS = 'quota';
const PREFIX = '/quota_PRE/';
const OWNER = 'quota';
/** Small enough to fill in a few seconds; etcd raises NOSPACE once the backend file outgrows it. */
const QUOTA_BYTES = 16 * 2 ** 20;
const FILLER_PREFIX = '/filler/';

let cluster: Cluster;
let registry: EtcdServer;
let observer: RegistryObserver;
let controller: ControllerProcess;
/** Pod name -> its key. */
const registered = new Map<string, string>();

/** etcdctl against the quota-limited etcd; no ETCDCTL_* from the environment (3.6 refuses a flag a variable also sets). */
async function etcdctl(...args: string[]): Promise<string> {
  const env = Object.fromEntries(Object.entries(process.env).filter(([name]) => !name.startsWith('ETCDCTL_')));
  const { stdout } = await run(toolPath('etcdctl'), [`--endpoints=${registry.endpoints.join(',')}`, ...args], { env });
  return stdout;
}

async function createPod(name: string): Promise<string> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: NS, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'quota', 'etcd-registrar.io/port': '86' } },
      spec: { containers: [{ name: 'app', image: 'x:1' }] },
    }),
  });
  const key = `${PREFIX}${await waitPodReadyIp(cluster, NS, name)}-86`;
  registered.set(name, key);
  return key;
}

async function readyz(): Promise<{ status: number; body: string }> {
  const response = await fetch(`${controller.metricsUrl}/readyz`, { signal: AbortSignal.timeout(5_000) });
  return { status: response.status, body: await response.text() };
}

before(async () => {
  cluster = await startCluster();
  await cluster.createNamespace(NS);
  registry = await startEtcd({ extraArgs: [`--quota-backend-bytes=${QUOTA_BYTES}`] });
  observer = new RegistryObserver(registry.endpoints);
  await observer.watch(PREFIX);
  controller = await startController({
    kubeconfig: cluster.kubeconfigPath, etcdEndpoints: registry.endpoints, name: 'quota',
    extraArgs: ['--environment', 'PRE', '--owner-id', OWNER, '--namespaces', NS, '--lease-ttl', '6s', '--reconcile-interval', '5s'],
  });
  await controller.waitReady(60_000);
});

after(async () => {
  await controller?.stop();
  await observer?.close();
  await registry?.destroy();
  await cluster?.stop();
});

describe('etcd faults', () => {
  it('quota exceeded: clear error, metric and /readyz reason, backoff, keys and lease survive; converges after compact, defrag and alarm disarm', async (t) => {
    const before = [await createPod('p1'), await createPod('p2')];
    await eventually('p1 and p2 registered', async () => {
      const snapshot = await observer.snapshot(PREFIX);
      return before.every((key) => snapshot.has(key));
    }, 20_000);
    const lease = await observer.dataLease(OWNER);

    // Fill etcd until it raises NOSPACE.
    const value = 'x'.repeat(512 * 1024);
    let filled = 0;
    for (;;) {
      try {
        await observer.client.put(`${FILLER_PREFIX}${filled}`).value(value).exec();
        filled++;
      } catch (error) {
        assert.match(String(error), /database space exceeded/, 'filling stops at the quota');
        break;
      }
      assert.ok(filled < 200, 'the quota was reached');
    }
    assert.match(await etcdctl('alarm', 'list'), /NOSPACE/);

    // A new pod cannot be registered: clear error, metric, /readyz reason, backoff.
    const blockedAt = Date.now();
    const p3 = await createPod('p3');
    await eventually('the controller reports NOSPACE', async () => (await readyz()).status === 503, 20_000);
    const { body } = await readyz();
    assert.match(body, /out of space \(NOSPACE alarm\)/);
    assert.equal(await metricValue(controller.metricsUrl, 'etcd_registrar_etcd_out_of_space'), 1);
    assert.ok(controller.lines().some((line) => String(line['msg']).startsWith('etcd is out of space (NOSPACE alarm)')));
    // 15 s with etcd full, longer than the 6 s lease TTL: keepalives still work.
    await new Promise((resolve) => setTimeout(resolve, blockedAt + 15_000 - Date.now()));
    const attempts = controller.audits().filter((r) => r.key === p3 && r.outcome === 'error').length;
    // Per-key backoff, and each 5 s reconcile retries once: not a busy loop.
    assert.ok(attempts >= 1 && attempts <= 20, `${attempts} attempts to write p3 in 15 s`);
    const snapshot = await observer.snapshot(PREFIX);
    for (const key of before) assert.equal(snapshot.get(key)?.lease, lease, `${key} kept on the data lease`);
    assert.ok(!snapshot.has(p3));
    assert.equal(await observer.dataLease(OWNER), lease);

    // The operator's repair: free space, compact, defragment, disarm.
    await observer.client.delete().prefix(FILLER_PREFIX).exec();
    const revision = (await observer.client.get(PREFIX).exec()).header.revision;
    await etcdctl('compact', revision);
    await etcdctl('defrag');
    await etcdctl('alarm', 'disarm');
    const repairedAt = Date.now();
    await eventually('p3 registered after the repair', async () => (await observer.snapshot(PREFIX)).has(p3), 20_000);
    const recoveredS = (Date.now() - repairedAt) / 1000;
    await eventually('ready again', async () => (await readyz()).status === 200, 10_000);
    assert.equal(await metricValue(controller.metricsUrl, 'etcd_registrar_etcd_out_of_space'), 0);
    assert.equal(await observer.dataLease(OWNER), lease, 'the same data lease throughout');
    assert.deepEqual(observer.deletesOf(new Set(before)), [], 'no registration deleted');
    t.diagnostic(`NOSPACE: ${attempts} write attempts for the blocked pod in 15 s; registered ${recoveredS.toFixed(1)} s after the alarm was disarmed`);
  });

  it('compaction of every revision the controller read: reads and writes go on, nothing live deleted', async (t) => {
    const snapshot = await observer.snapshot(PREFIX);
    const p1 = registered.get('p1')!;
    const live = [...snapshot.keys()].filter((key) => key !== p1);
    assert.ok(live.length >= 2 && snapshot.has(p1));
    const from = observer.events.length;
    const errorsBefore = await metricValue(controller.metricsUrl, 'etcd_registrar_reconciles_total{outcome="error"}');
    // Revisions of other writers, then all of history compacted away, as a compacting cluster does.
    for (let i = 0; i < 50; i++) await observer.client.put(`/other/${i}`).value(String(i)).exec();
    await etcdctl('compact', (await observer.client.get(PREFIX).exec()).header.revision);
    const reconciles = (): number => controller.lines().filter((line) => line['msg'] === 'reconcile planned').length;
    const reconcilesBefore = reconciles();
    const p4 = await createPod('p4');
    await cluster.kubectl(['delete', 'pod', 'p1', '-n', NS, '--wait=false']);
    await eventually('p4 registered and p1 deregistered after the compaction', async () => {
      const now = await observer.snapshot(PREFIX);
      return now.has(p4) && !now.has(p1);
    }, 20_000);
    await eventually('two full reconciles after the compaction', () => reconciles() >= reconcilesBefore + 2, 20_000);
    assert.equal(await metricValue(controller.metricsUrl, 'etcd_registrar_reconciles_total{outcome="error"}'), errorsBefore, 'no reconcile failed');
    assert.deepEqual(observer.events.slice(from).filter((e) => e.type === 'delete' && live.includes(e.key)), [], 'no live key deleted');
    t.diagnostic('compaction: reads and writes went on; no live key deleted');
  });
});
