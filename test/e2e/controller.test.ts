// The controller end to end: the real `etcd-registrar run` process against a real
// kube-apiserver with KWOK nodes and a real registry etcd, observed independently.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { startEtcd } from '../cluster/etcd.ts';
import { freePort } from '../cluster/process.ts';
import { eventually, metricValue, registrarBin, RegistryObserver, startController, type ControllerProcess } from './support.ts';

const run = promisify(execFile);
const OWNER = 'e2e';
const PREFIX = '/search_PRE/';
const TTL = 6;

let cluster: Cluster;
let observer: RegistryObserver;
let controller: ControllerProcess;

function controllerArgs(extra: readonly string[] = []): readonly string[] {
  // parseArgs keeps the last occurrence, so `extra` may override the owner id.
  return ['--environment', 'PRE', '--owner-id', OWNER, '--lease-ttl', `${TTL}s`, '--reconcile-interval', '2s', '--namespaces', 'e2e', ...extra];
}

async function kubectl(...args: string[]): Promise<string> {
  return (await cluster.kubectl(args)).stdout;
}

async function apply(manifest: unknown): Promise<void> {
  await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(manifest) });
}

interface PodInfo {
  name: string;
  uid: string;
  ip: string;
  ready: boolean;
  deleting: boolean;
}

async function pods(selector: string, namespace = 'e2e'): Promise<PodInfo[]> {
  const list = JSON.parse(await kubectl('get', 'pods', '-n', namespace, '-l', selector, '-o', 'json')) as {
    items: Array<{ metadata: { name: string; uid: string; deletionTimestamp?: string }; status: { podIP?: string; conditions?: Array<{ type: string; status: string }> } }>;
  };
  return list.items.map((pod) => ({
    name: pod.metadata.name,
    uid: pod.metadata.uid,
    ip: pod.status.podIP ?? '',
    ready: pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false,
    deleting: pod.metadata.deletionTimestamp !== undefined,
  }));
}

/** The pods that should have keys: Ready, not terminating, with an IP. */
async function servingPods(selector: string, namespace = 'e2e'): Promise<PodInfo[]> {
  return (await pods(selector, namespace)).filter((pod) => pod.ready && !pod.deleting && pod.ip !== '');
}

/** etcd's keys under the prefix equal exactly the Ready, non-terminating pods' keys, on the data lease. */
async function registryMatchesReadyPods(selector: string, port: number, expectedCount: number): Promise<boolean> {
  const serving = await servingPods(selector);
  if (serving.length !== expectedCount) return false;
  const lease = await observer.dataLease(OWNER);
  const snapshot = await observer.snapshot(PREFIX);
  const ours = [...snapshot].filter(([, state]) => state.lease === lease);
  const expected = new Map(serving.map((pod) => [`${PREFIX}${pod.ip}-${port}`, `${pod.ip}:${port}`]));
  if (ours.length !== expected.size) return false;
  return ours.every(([key, state]) => expected.get(key) === state.value);
}

function deployment(name: string, replicas: number, annotations: Record<string, string> = {}, namespace = 'e2e'): unknown {
  return {
    apiVersion: 'apps/v1',
    kind: 'Deployment',
    metadata: { name, namespace },
    spec: {
      replicas,
      selector: { matchLabels: { app: name } },
      template: {
        metadata: {
          labels: { app: name },
          annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86', ...annotations },
        },
        spec: {
          terminationGracePeriodSeconds: 30,
          containers: [{ name: 'app', image: 'search:1', ports: [{ name: 'http', containerPort: 86 }] }],
        },
      },
    },
  };
}

function pod(name: string, annotations: Record<string, string>, extra: Record<string, unknown> = {}): unknown {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: 'e2e', labels: { app: name }, annotations: { 'etcd-registrar.io/register': 'true', ...annotations } },
    spec: { terminationGracePeriodSeconds: 30, containers: [{ name: 'app', image: 'x:1', ports: [{ name: 'http', containerPort: 86 }] }], ...extra },
  };
}

async function setReady(name: string, ready: boolean): Promise<void> {
  const status = ready ? 'True' : 'False';
  await kubectl('patch', 'pod', name, '-n', 'e2e', '--subresource=status', '--type=strategic', '-p',
    JSON.stringify({ status: { conditions: [{ type: 'Ready', status }, { type: 'ContainersReady', status }] } }));
}

/** A pod of service "search" on port 86, created and waited for until its key is in etcd. */
async function registeredSearchPod(name: string): Promise<{ info: PodInfo; key: string }> {
  await apply(pod(name, { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' }));
  await eventually(`${name} registered`, () => registryMatchesReadyPods(`app=${name}`, 86, 1));
  const [info] = await pods(`app=${name}`);
  assert.ok(info);
  return { info, key: `${PREFIX}${info.ip}-86` };
}

before(async () => {
  cluster = await startCluster();
  await kubectl('create', 'namespace', 'e2e');
  observer = new RegistryObserver(cluster.registry.endpoints);
  await observer.watch('/');
  controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: controllerArgs() });
  await controller.waitReady();
});

after(async () => {
  await controller?.stop();
  await observer?.close();
  await cluster?.stop();
});

describe('etcd-registrar run', () => {
  it('keeps exactly the Ready pods of a Deployment registered as it scales 0 -> 5 -> 2 -> 0', async () => {
    await apply(deployment('search', 0));
    for (const replicas of [5, 2, 0]) {
      await kubectl('scale', 'deployment/search', '-n', 'e2e', `--replicas=${replicas}`);
      await eventually(`etcd holds the ${replicas} Ready pods' keys`, () => registryMatchesReadyPods('app=search', 86, replicas), 30_000);
      // Two pods with one IP share one key: then the count below says nothing about the controller.
      const ips = (await servingPods('app=search')).map((pod) => pod.ip);
      assert.equal(new Set(ips).size, ips.length, `the cluster gave two Ready pods one IP: ${ips.join(', ')}`);
    }
    const registered = controller.audits().filter((r) => r.action === 'register' && r.outcome === 'ok');
    assert.equal(registered.length, 5, `register records: ${JSON.stringify(controller.audits().filter((r) => r.action === 'register'))}`);
    for (const record of registered) {
      assert.match(record.key ?? '', /^\/search_PRE\/10\.\d+\.\d+\.\d+-86$/);
      assert.equal(record.owner, OWNER);
      assert.ok(record.pod?.startsWith('e2e/search-'));
    }
  });

  it('deregisters a pod whose readiness flips to false and registers it again when Ready', async () => {
    const { info, key } = await registeredSearchPod('flip');
    await setReady('flip', false);
    await eventually('key deleted after un-Ready', async () => !(await observer.snapshot(key)).has(key));
    await setReady('flip', true);
    await eventually('key back after Ready', async () => (await observer.snapshot(key)).get(key)?.value === `${info.ip}:86`);
    await kubectl('delete', 'pod', 'flip', '-n', 'e2e', '--grace-period=0', '--force');
  });

  it('deletes a terminating pod\'s key while the pod is still Terminating', async () => {
    // A finalizer holds the pod in Terminating, as a long graceful shutdown would.
    await apply(pod('term', { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' }, {}));
    await kubectl('patch', 'pod', 'term', '-n', 'e2e', '--type=merge', '-p', JSON.stringify({ metadata: { finalizers: ['e2e.test/hold'] } }));
    await eventually('term registered', () => registryMatchesReadyPods('app=term', 86, 1));
    const [info] = await pods('app=term');
    assert.ok(info);
    const key = `${PREFIX}${info.ip}-86`;
    await kubectl('delete', 'pod', 'term', '-n', 'e2e', '--wait=false');
    await eventually('key deleted', async () => !(await observer.snapshot(key)).has(key), 5_000);
    const [still] = await pods('app=term');
    assert.ok(still?.deleting, 'the pod is still Terminating when its key is gone');
    // KWOK may hand this pod an IP an earlier test's pod had: take the latest record.
    const record = controller.audits().filter((r) => r.key === key && r.action === 'deregister').at(-1);
    assert.equal(record?.outcome, 'ok');
    assert.equal(record?.pod, 'e2e/term');
    await kubectl('patch', 'pod', 'term', '-n', 'e2e', '--type=merge', '-p', JSON.stringify({ metadata: { finalizers: null } }));
  });

  it('removes an orphan on our lease at the next reconcile; dry-run reports it and writes nothing', async () => {
    const lease = await observer.dataLease(OWNER);
    assert.ok(lease);
    const orphan = `${PREFIX}10.99.0.1-86`;
    // Stop the running controller so that only the one-off command acts.
    await controller.stop();
    await observer.client.put(orphan).value('10.99.0.1:86').lease(lease).exec();

    const dry = await run(process.execPath, [registrarBin, 'reconcile', '--once', '--dry-run', '--output', 'json', '--kubeconfig', cluster.kubeconfigPath, '--etcd-endpoints', cluster.registry.endpoints.join(','), ...controllerArgs()]);
    const report = JSON.parse(dry.stdout.split('\n').find((line) => line.startsWith('{"outcome"')) ?? '{}') as { changes?: Array<{ action: string; key: string }> };
    assert.deepEqual(report.changes?.map((c) => [c.action, c.key]), [['orphan-delete', orphan]]);
    assert.equal((await observer.snapshot(orphan)).get(orphan)?.value, '10.99.0.1:86', 'dry-run wrote nothing');

    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: controllerArgs() });
    await controller.waitReady();
    await eventually('orphan removed', async () => !(await observer.snapshot(orphan)).has(orphan));
    const records = controller.audits().filter((r) => r.key === orphan);
    assert.deepEqual(records.map((r) => [r.action, r.outcome]), [['orphan-delete', 'ok']]);
  });

  it('at rest, reconciles find etcd unchanged without reading every key; a key deleted or rewritten by hand is still put back', async () => {
    const { info, key } = await registeredSearchPod('rest');
    const unchanged = (): Promise<number> => metricValue(controller.metricsUrl, 'etcd_registrar_etcd_reads_total{scope="unchanged"}');
    const scoped = (): Promise<number> => metricValue(controller.metricsUrl, 'etcd_registrar_etcd_reads_total{scope="scoped"}');
    // Reconciles every 2 s: once nothing is written, they are answered "unchanged".
    const before = await unchanged();
    await eventually('two reconciles answered unchanged', async () => (await unchanged()) >= (Number.isNaN(before) ? 0 : before) + 2, 15_000);
    const lease = await observer.dataLease(OWNER);
    assert.ok(lease);
    for (const [what, tamper] of [
      ['deleted by hand', () => observer.client.delete().key(key).exec()],
      ['rewritten by hand on our lease', () => observer.client.put(key).value('10.0.0.0:1').lease(lease).exec()],
    ] as const) {
      const scopedBefore = await scoped();
      await tamper();
      await eventually(`the key ${what} is put back`, async () => (await observer.snapshot(key)).get(key)?.value === `${info.ip}:86`, 15_000);
      assert.ok((await scoped()) > scopedBefore, `the key ${what} was found by a read, not the watch`);
      assert.equal((await observer.snapshot(key)).get(key)?.lease, lease);
    }
    await kubectl('delete', 'pod', 'rest', '-n', 'e2e', '--grace-period=0', '--force');
  });

  it('never touches keys written by others under the same prefix, with or without a lease', async () => {
    const foreignLease = await observer.client.lease(60);
    const leased = `${PREFIX}10.98.0.1-86`;
    const plain = `${PREFIX}10.98.0.2-86`;
    await foreignLease.put(leased).value('sidecar-a');
    await observer.client.put(plain).value('sidecar-b');
    const before = await observer.snapshot(PREFIX);
    // Three reconcile intervals.
    const passes = (): number => controller.lines().filter((line) => line['msg'] === 'reconcile planned').length;
    const start = passes();
    await eventually('three more reconciles', () => passes() >= start + 3, 15_000);
    const now = await observer.snapshot(PREFIX);
    assert.deepEqual(now.get(leased), before.get(leased));
    assert.deepEqual(now.get(plain), before.get(plain));
    assert.equal(controller.audits().filter((r) => r.key === leased || r.key === plain).length, 0);
    await foreignLease.revoke();
    await observer.client.delete().key(plain).exec();
  });

  it('keeps a live pod\'s key when another pod with the same address goes away', async () => {
    // Two pods registered by host IP on the same node and port map to the same key.
    const annotations = { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '87', 'etcd-registrar.io/address': 'host' };
    const node = (JSON.parse(await kubectl('get', 'nodes', '-o', 'json')) as { items: Array<{ metadata: { name: string } }> }).items[0]?.metadata.name;
    assert.ok(node);
    await apply(pod('reuse-old', annotations, { nodeName: node }));
    await apply(pod('reuse-new', annotations, { nodeName: node }));
    await eventually('both Ready', async () => (await pods('app in (reuse-old,reuse-new)')).filter((p) => p.ready).length === 2);
    const hostIp = (JSON.parse(await kubectl('get', 'pod', 'reuse-new', '-n', 'e2e', '-o', 'json')) as { status: { hostIP: string } }).status.hostIP;
    const key = `${PREFIX}${hostIp}-87`;
    await eventually('shared key registered', async () => (await observer.snapshot(key)).has(key));
    const deletesBefore = observer.deletesOf(new Set([key])).length;
    await kubectl('delete', 'pod', 'reuse-old', '-n', 'e2e', '--grace-period=0', '--force');
    await eventually('old pod gone', async () => (await pods('app=reuse-old')).length === 0);
    const passes = controller.lines().filter((line) => line['msg'] === 'reconcile planned').length;
    await eventually('a reconcile after the delete', () => controller.lines().filter((line) => line['msg'] === 'reconcile planned').length > passes);
    assert.equal(observer.deletesOf(new Set([key])).length, deletesBefore, 'no DELETE of the live pod\'s key');
    assert.equal((await observer.snapshot(key)).get(key)?.value, `${hostIp}:87`);
    await kubectl('delete', 'pod', 'reuse-new', '-n', 'e2e', '--grace-period=0', '--force');
    await eventually('key removed with the last pod', async () => !(await observer.snapshot(key)).has(key));
  });

  it('rejects every kind of invalid annotation with a Warning event, writes nothing and keeps running', async () => {
    const invalid: Record<string, Record<string, string>> = {
      'bad-port': { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': 'eighty' },
      'big-port': { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '70000' },
      'unknown-named-port': { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': 'grpc' },
      'empty-service': { 'etcd-registrar.io/service': '', 'etcd-registrar.io/port': '86' },
      'slash-service': { 'etcd-registrar.io/service': 'a/b', 'etcd-registrar.io/port': '86' },
      'dotdot-service': { 'etcd-registrar.io/service': '..', 'etcd-registrar.io/port': '86' },
      'dotdot-env': { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/environment': '../x', 'etcd-registrar.io/port': '86' },
      'bad-address': { 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/address': 'node', 'etcd-registrar.io/port': '86' },
    };
    const before = await observer.snapshot('/');
    for (const [name, annotations] of Object.entries(invalid)) await apply(pod(name, annotations));
    for (const name of Object.keys(invalid)) {
      await eventually(`Warning event on ${name}`, async () => {
        const events = JSON.parse(await kubectl('get', 'events.events.k8s.io', '-n', 'e2e', '--field-selector', `regarding.name=${name}`, '-o', 'json')) as { items: Array<{ type: string; reason: string }> };
        return events.items.some((event) => event.type === 'Warning' && event.reason === 'InvalidRegistration');
      });
      const uid = (JSON.parse(await kubectl('get', 'pod', name, '-n', 'e2e', '-o', 'json')) as { metadata: { uid: string } }).metadata.uid;
      assert.ok(controller.audits().some((r) => r.action === 'skip' && r.podUid === uid), `audit skip for ${name}`);
    }
    const after = await observer.snapshot('/');
    const added = [...after.keys()].filter((key) => !before.has(key) && !key.startsWith('/etcd-registrar/'));
    assert.deepEqual(added, []);
    assert.ok(controller.proc.isRunning());
    assert.ok((await fetch(`${controller.metricsUrl}/readyz`)).ok);
    for (const name of Object.keys(invalid)) await kubectl('delete', 'pod', name, '-n', 'e2e', '--grace-period=0', '--force');
  });
});

describe('restarts and etcd outages', () => {
  it('survives SIGKILL and a restart within the TTL without deleting live keys, and catches up on changes', async () => {
    await apply(deployment('survivor', 3));
    await eventually('3 registered', () => registryMatchesReadyPods('app=survivor', 86, 3), 30_000);
    const live = new Set((await pods('app=survivor')).map((p) => `${PREFIX}${p.ip}-86`));
    const watchFrom = observer.events.length;
    controller.proc.signal('SIGKILL');
    await controller.proc.exited;
    // A change while the controller is down: one pod goes away, two appear.
    await kubectl('scale', 'deployment/survivor', '-n', 'e2e', '--replicas=4');
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: controllerArgs() });
    await controller.waitReady();
    await eventually('4 registered after restart', () => registryMatchesReadyPods('app=survivor', 86, 4), 30_000);
    const deletes = observer.events.slice(watchFrom).filter((e) => e.type === 'delete' && live.has(e.key));
    assert.deepEqual(deletes, [], 'no DELETE of a live key across the restart');

    // SIGTERM: exit 0 without revoking the lease or deleting keys (the pods are still alive).
    const lease = await observer.dataLease(OWNER);
    const beforeStop = await observer.snapshot(PREFIX);
    const stopFrom = observer.events.length;
    assert.equal(await controller.stop(), 0);
    assert.deepEqual(await observer.snapshot(PREFIX), beforeStop);
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: controllerArgs() });
    await controller.waitReady();
    assert.equal(await observer.dataLease(OWNER), lease, 'the restarted controller adopted the same lease');
    assert.deepEqual(observer.events.slice(stopFrom).filter((e) => e.type === 'delete'), []);

    // A second signal while stopping: exit 1 at once, said in the log; the lease and keys stay.
    const beforeForced = await observer.snapshot(PREFIX);
    controller.proc.signal('SIGTERM');
    controller.proc.signal('SIGINT');
    assert.equal((await controller.proc.exited).code, 1);
    const forced = controller.lines().filter((line) => line['msg'] === 'second signal while stopping: exiting now without finishing; the lease and keys stay');
    assert.equal(forced.length, 1, 'one log line says why the stop was cut short');
    assert.ok(['SIGTERM', 'SIGINT'].includes(String(forced[0]?.['signal'])));
    assert.deepEqual(await observer.snapshot(PREFIX), beforeForced);
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: controllerArgs() });
    await controller.waitReady();
    assert.equal(await observer.dataLease(OWNER), lease, 'the lease survived the cut-short stop');
  });

  it('keeps registrations through an etcd restart, and restores them after an outage longer than the TTL', async () => {
    await eventually('4 registered', () => registryMatchesReadyPods('app=survivor', 86, 4), 30_000);
    await cluster.registry.stop();
    await cluster.registry.start();
    await eventually('still registered after an etcd restart', () => registryMatchesReadyPods('app=survivor', 86, 4), 15_000);

    await cluster.registry.stop();
    // Longer than the TTL: etcd expires the lease and its keys when it comes back.
    await new Promise((resolve) => setTimeout(resolve, (TTL + 3) * 1000));
    await cluster.registry.start();
    const back = Date.now();
    await eventually('every key restored after the outage', () => registryMatchesReadyPods('app=survivor', 86, 4), 20_000);
    const seconds = (Date.now() - back) / 1000;
    assert.ok(controller.proc.isRunning());
    process.stdout.write(`# keys restored ${seconds.toFixed(1)} s after etcd returned\n`);
    await kubectl('delete', 'deployment/survivor', '-n', 'e2e');
  });
});

describe('lease lost under overload', () => {
  it('a controller frozen past the TTL finds its lease gone and re-puts every key on a new lease', async () => {
    // A stalled event loop (CPU starvation, a long GC) stops keepalives like SIGSTOP does.
    // Without leader election the controller itself must notice and recover; with it, the
    // frozen replica also lost its campaign and exits (test/e2e/ha.test.ts).
    const owner = 'frozen';
    // Its own namespace: the file's main controller must not register these pods too.
    await cluster.createNamespace('frozen');
    const frozen = await startController({
      kubeconfig: cluster.kubeconfigPath,
      etcdEndpoints: cluster.registry.endpoints,
      name: 'frozen',
      extraArgs: controllerArgs(['--owner-id', owner, '--leader-election', 'false', '--namespaces', 'frozen']),
    });
    try {
      await frozen.waitReady();
      await apply(deployment('frozen', 3, {}, 'frozen'));
      const matches = async (): Promise<boolean> => {
        const serving = await servingPods('app=frozen', 'frozen');
        const lease = await observer.dataLease(owner);
        const snapshot = await observer.snapshot(PREFIX);
        return serving.length === 3 && serving.every((p) => snapshot.get(`${PREFIX}${p.ip}-86`)?.lease === lease);
      };
      const registerRecords = (): number => frozen.audits().filter((r) => r.action === 'register' && r.outcome === 'ok').length;
      // Audited too: freezing it between a transaction's commit and its response would leave
      // that write unaudited until the resume, which then finds the call failed and retries.
      await eventually('3 registered and audited', async () => (await matches()) && registerRecords() >= 3, 30_000);
      const auditedBefore = registerRecords();
      const leaseBefore = await observer.dataLease(owner);
      frozen.proc.signal('SIGSTOP');
      const keys = new Set((await pods('app=frozen', 'frozen')).map((p) => `${PREFIX}${p.ip}-86`));
      await eventually('etcd expired the lease and its keys', async () => {
        const snapshot = await observer.snapshot(PREFIX);
        return [...keys].every((key) => !snapshot.has(key));
      }, (TTL + 10) * 1000);
      frozen.proc.signal('SIGCONT');
      const resumed = Date.now();
      await eventually('every key back on a new lease', async () => (await matches()) && (await observer.dataLease(owner)) !== leaseBefore, 20_000);
      const seconds = (Date.now() - resumed) / 1000;
      assert.ok(frozen.proc.isRunning());
      assert.ok(registerRecords() >= auditedBefore + 3, 'registered, then re-put after the new lease');
      process.stdout.write(`# keys re-put on a new lease ${seconds.toFixed(1)} s after the frozen controller resumed\n`);
    } finally {
      if (frozen.proc.isRunning()) await frozen.stop();
      await kubectl('delete', 'namespace', 'frozen', '--wait=false');
    }
  });
});

describe('etcd unreachable at start', () => {
  it('stays alive and unready until etcd appears, then registers by itself', async () => {
    const port = await freePort();
    const late = await startController({
      kubeconfig: cluster.kubeconfigPath,
      etcdEndpoints: [`http://127.0.0.1:${port}`],
      name: 'late',
      extraArgs: [...controllerArgs(['--owner-id', 'late'])],
    });
    try {
      await eventually('serving /healthz', async () => (await fetch(`${late.metricsUrl}/healthz`).catch(() => undefined))?.ok === true);
      const ready = await fetch(`${late.metricsUrl}/readyz`);
      assert.equal(ready.status, 503);
      await apply(pod('late-app', { 'etcd-registrar.io/service': 'late', 'etcd-registrar.io/port': '86' }));
      const etcd = await startEtcd({ clientPort: port });
      try {
        await late.waitReady(30_000);
        const lateObserver = new RegistryObserver(etcd.endpoints);
        try {
          await eventually('late-app registered', async () => (await lateObserver.snapshot('/late_PRE/')).size === 1, 15_000);
        } finally {
          await lateObserver.close();
        }
      } finally {
        assert.equal(await late.stop(), 0);
        await etcd.destroy();
      }
    } finally {
      if (late.proc.isRunning()) await late.stop();
      await kubectl('delete', 'pod', 'late-app', '-n', 'e2e', '--grace-period=0', '--force');
    }
  });
});
