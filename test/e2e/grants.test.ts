// Service grants end to end (issue 7): the real `etcd-registrar run` against a real
// kube-apiserver with KWOK nodes and a real registry etcd, observed independently.
// team-a is granted "search" by its Namespace annotation; team-b is not.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { execFileSync } from 'node:child_process';
import { eventually, keyState as etcdKeyState, registrarBin, RegistryObserver, startController, waitPodReadyIp, type ControllerProcess } from './support.ts';

const OWNER = 'grants';
const PREFIX = '/search_PRE/';
const ANNOTATION = 'etcd-registrar.io/allowed-services';

let cluster: Cluster;
let observer: RegistryObserver;
let controller: ControllerProcess | undefined;

function args(mode: 'strict' | 'open', namespaces: string): string[] {
  return ['--environment', 'PRE', '--owner-id', OWNER, '--lease-ttl', '10s', '--reconcile-interval', '2s', '--namespaces', namespaces, '--service-grants', mode];
}

async function kubectl(...command: string[]): Promise<string> {
  return (await cluster.kubectl(command)).stdout;
}

async function createSearchPod(namespace: string, name: string): Promise<string> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace, labels: { app: name }, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' } },
      spec: { containers: [{ name: 'app', image: 'search:1' }] },
    }),
  });
  return waitPodReadyIp(cluster, namespace, name);
}

/** The key's etcd state with its modRevision: an untouched key keeps it. */
const keyState = (key: string): ReturnType<typeof etcdKeyState> => etcdKeyState(observer.client, key);

async function warningEvents(namespace: string, pod: string, reason: string): Promise<Array<{ note?: string }>> {
  const list = JSON.parse(await kubectl('get', 'events.events.k8s.io', '-n', namespace, '--field-selector', `regarding.name=${pod}`, '-o', 'json')) as { items: Array<{ type: string; reason: string; note?: string }> };
  return list.items.filter((event) => event.type === 'Warning' && event.reason === reason);
}

async function metric(name: string): Promise<number | undefined> {
  assert.ok(controller);
  const text = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.split(' ')[1]);
}

before(async () => {
  cluster = await startCluster();
  for (const ns of ['team-a', 'team-b', 'team-c']) await kubectl('create', 'namespace', ns);
  await kubectl('annotate', 'namespace', 'team-a', `${ANNOTATION}=search, web`);
  observer = new RegistryObserver(cluster.registry.endpoints);
});

after(async () => {
  await controller?.stop();
  await observer?.close();
  await cluster?.stop();
});

describe('service grants', () => {
  let teamAKey = '';
  let teamAState: Awaited<ReturnType<typeof keyState>>;
  let rogueKey = '';

  it('strict: a pod claiming another team\'s service is refused (event, audit skip, no key); the granted team\'s key is untouched', async () => {
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: args('strict', 'team-a,team-b') });
    await controller.waitReady();
    const ipA = await createSearchPod('team-a', 'search-a');
    teamAKey = `${PREFIX}${ipA}-86`;
    await eventually('team-a registered', async () => (await keyState(teamAKey))?.value === `${ipA}:86`);
    teamAState = await keyState(teamAKey);
    assert.equal(teamAState?.lease, await observer.dataLease(OWNER));

    const ipB = await createSearchPod('team-b', 'rogue');
    rogueKey = `${PREFIX}${ipB}-86`;
    const started = Date.now();
    await eventually('Warning ServiceNotGranted on team-b/rogue', async () => (await warningEvents('team-b', 'rogue', 'ServiceNotGranted')).length > 0, 15_000);
    const [event] = await warningEvents('team-b', 'rogue', 'ServiceNotGranted');
    assert.match(event?.note ?? '', /not registered in etcd: service "search" is not granted to namespace "team-b"/);
    console.error(`# refusal event visible ${String(Date.now() - started)} ms after the pod was Ready`);
    await eventually('audit skip for team-b/rogue', () => controller?.audits().some((r) => r.action === 'skip' && r.pod === 'team-b/rogue') === true);
    // A few reconciles later: still one skip record, no key, team-a's key exactly as it was.
    const passes = (): number => controller?.lines().filter((line) => line['msg'] === 'reconcile planned').length ?? 0;
    const from = passes();
    await eventually('two more reconciles', () => passes() >= from + 2, 15_000);
    const skips = controller.audits().filter((r) => r.pod === 'team-b/rogue');
    assert.deepEqual(skips.map((r) => [r.action, r.key, r.outcome]), [['skip', null, 'ok']]);
    assert.match(skips[0]?.reason ?? '', new RegExp(`not granted to namespace "team-b".*not registered: ${rogueKey.replaceAll('.', '\\.')}`));
    assert.equal(await keyState(rogueKey), undefined);
    assert.deepEqual(await keyState(teamAKey), teamAState, 'team-a key: same value, lease and modRevision');
    assert.equal((await observer.snapshot(PREFIX)).size, 1);
    assert.equal(await metric('etcd_registrar_ungranted_claims_total{outcome="refused"}'), 1);
  });

  it('strict: granting the namespace registers its pod; revoking deregisters it; team-a untouched throughout', async () => {
    assert.ok(controller);
    let started = Date.now();
    await kubectl('annotate', 'namespace', 'team-b', `${ANNOTATION}=search`);
    await eventually('rogue registered after the grant', async () => (await keyState(rogueKey)) !== undefined);
    console.error(`# registered ${String(Date.now() - started)} ms after the grant`);
    started = Date.now();
    await kubectl('annotate', 'namespace', 'team-b', `${ANNOTATION}-`);
    await eventually('rogue deregistered after the revoke', async () => (await keyState(rogueKey)) === undefined);
    console.error(`# deregistered ${String(Date.now() - started)} ms after the revoke`);
    // etcd may show the delete before the controller has written its audit line.
    await eventually('deregister audited', () => controller?.audits().some((r) => r.key === rogueKey && r.action === 'deregister') === true);
    const records = controller.audits().filter((r) => r.key === rogueKey);
    assert.deepEqual(records.map((r) => [r.action, r.outcome, r.pod]), [['register', 'ok', 'team-b/rogue'], ['deregister', 'ok', 'team-b/rogue']]);
    assert.match(records[1]?.reason ?? '', /not granted to namespace "team-b" \(--service-grants strict\)/);
    // Refused again after the revoke: a second skip record and event.
    await eventually('second skip', () => controller?.audits().filter((r) => r.action === 'skip' && r.pod === 'team-b/rogue').length === 2);
    assert.deepEqual(await keyState(teamAKey), teamAState, 'team-a key: same value, lease and modRevision');
    assert.equal(controller.audits().filter((r) => r.key === teamAKey).length, 1, 'team-a: only its own register record');
  });

  it('strict: a restarted controller judges no pod before the namespaces are listed (no key deleted or re-put)', async () => {
    assert.equal(await controller?.stop(), 0);
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: args('strict', 'team-a,team-b') });
    await controller.waitReady();
    const passes = (): number => controller?.lines().filter((line) => line['msg'] === 'reconcile planned').length ?? 0;
    await eventually('two reconciles after the restart', () => passes() >= 2, 15_000);
    assert.deepEqual(await keyState(teamAKey), teamAState, 'team-a key: same value, lease and modRevision');
    assert.equal(await keyState(rogueKey), undefined);
    assert.deepEqual(controller.audits().map((r) => [r.action, r.pod]), [['skip', 'team-b/rogue']], 'only the refusal, once');
  });

  it('open: an ungranted claim is registered, with a warning in the audit record, a Warning event and the metric', async () => {
    assert.equal(await controller?.stop(), 0);
    controller = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: args('open', 'team-c') });
    await controller.waitReady();
    const ip = await createSearchPod('team-c', 'migrating');
    const key = `${PREFIX}${ip}-86`;
    await eventually('team-c registered', async () => (await keyState(key))?.value === `${ip}:86`);
    await eventually('register audited', () => controller?.audits().some((r) => r.key === key && r.action === 'register') === true);
    const record = controller.audits().find((r) => r.key === key && r.action === 'register');
    assert.equal(record?.outcome, 'ok');
    assert.match(record?.reason ?? '', /warning: service "search" is not granted to namespace "team-c" \(allowed by --service-grants open/);
    await eventually('Warning ServiceNotGranted on team-c/migrating', async () => (await warningEvents('team-c', 'migrating', 'ServiceNotGranted')).length > 0);
    const [event] = await warningEvents('team-c', 'migrating', 'ServiceNotGranted');
    assert.match(event?.note ?? '', /registered although service "search" is not granted to namespace "team-c"/);
    assert.ok(controller.lines().some((line) => line['msg'] === 'service not granted to the namespace; registered anyway (--service-grants open)' && line['pod'] === 'team-c/migrating'));
    assert.equal(await metric('etcd_registrar_ungranted_claims_total{outcome="allowed"}'), 1);
    assert.equal(controller.audits().filter((r) => r.action === 'skip').length, 0);

    // `list` judges grants as `run` does: open lists the ungranted key as registered; strict
    // (what `run` would delete it under) lists it without a pod that wants it.
    const listed = (mode: 'strict' | 'open'): Array<{ key: string; state: string; pod: string | null }> => {
      const out = execFileSync(process.execPath, [
        registrarBin, 'list', '--output', 'json', '--kubeconfig', cluster.kubeconfigPath,
        '--etcd-endpoints', cluster.registry.endpoints.join(','), ...args(mode, 'team-c'),
      ], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      return (JSON.parse(out) as { registrations: Array<{ key: string; state: string; pod: string | null }> }).registrations;
    };
    assert.deepEqual(listed('open').find((r) => r.key === key), { key, value: `${ip}:86`, pod: 'team-c/migrating', state: 'registered', leaseId: (await keyState(key))?.lease });
    assert.equal(listed('strict').find((r) => r.key === key)?.state, 'orphan (no pod)');
  });
});
