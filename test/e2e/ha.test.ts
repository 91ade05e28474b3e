// Two replicas of one owner: one leader writes, the standby keeps its cache warm and the
// data lease alive, and takes over when the leader dies or resigns — without deleting or
// re-creating any live key.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { eventually, RegistryObserver, startController, type ControllerProcess } from './support.ts';

const OWNER = 'ha';
const PREFIX = '/ha_PRE/';
let cluster: Cluster;
let observer: RegistryObserver;
const replicas: ControllerProcess[] = [];

const args = ['--environment', 'PRE', '--owner-id', OWNER, '--lease-ttl', '10s', '--election-ttl', '2s', '--reconcile-interval', '5s', '--namespaces', 'ha'];

async function startReplica(name: string): Promise<ControllerProcess> {
  const replica = await startController({ kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, extraArgs: args, name });
  replicas.push(replica);
  await replica.waitReady();
  return replica;
}

const isLeader = (replica: ControllerProcess): boolean => replica.lines().some((line) => line['msg'] === 'elected leader');

async function createPod(name: string): Promise<void> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: 'ha', labels: { app: 'ha' }, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'ha', 'etcd-registrar.io/port': '86' } },
      spec: { containers: [{ name: 'app', image: 'x:1' }] },
    }),
  });
}

async function podIp(name: string): Promise<string> {
  let ip = '';
  await eventually(`${name} has an IP`, async () => {
    ip = (JSON.parse((await cluster.kubectl(['get', 'pod', name, '-n', 'ha', '-o', 'json'])).stdout) as { status: { podIP?: string } }).status.podIP ?? '';
    return ip !== '';
  });
  return ip;
}

before(async () => {
  cluster = await startCluster();
  await cluster.createNamespace('ha');
  observer = new RegistryObserver(cluster.registry.endpoints);
  await observer.watch(PREFIX);
});

after(async () => {
  for (const replica of replicas) if (replica.proc.isRunning()) await replica.stop();
  await observer?.close();
  await cluster?.stop();
});

describe('two replicas', () => {
  it('one leads, the standby is ready, and takes over after SIGKILL and after SIGTERM without deleting live keys', async () => {
    const first = await startReplica('replica-a');
    await eventually('a leads', () => isLeader(first));
    const second = await startReplica('replica-b');
    assert.equal(isLeader(second), false, 'b is a standby');
    assert.ok((await fetch(`${second.metricsUrl}/readyz`)).ok, 'a standby is ready');

    for (const name of ['p1', 'p2', 'p3']) await createPod(name);
    const keys = new Set<string>();
    for (const name of ['p1', 'p2', 'p3']) keys.add(`${PREFIX}${await podIp(name)}-86`);
    await eventually('3 keys', async () => [...(await observer.snapshot(PREFIX)).keys()].filter((k) => keys.has(k)).length === 3);
    const lease = await observer.dataLease(OWNER);

    // SIGKILL the leader: b takes over within the election TTL and registers a new pod.
    first.proc.signal('SIGKILL');
    await first.proc.exited;
    const killedAt = Date.now();
    await createPod('p4');
    const p4 = `${PREFIX}${await podIp('p4')}-86`;
    await eventually('p4 registered by the new leader', async () => (await observer.snapshot(PREFIX)).has(p4), 20_000);
    const takeoverSeconds = (Date.now() - killedAt) / 1000;
    assert.ok(isLeader(second));
    assert.equal(await observer.dataLease(OWNER), lease, 'the same data lease');
    assert.deepEqual(observer.deletesOf(keys), [], 'no DELETE of a live key');
    keys.add(p4);

    // SIGTERM the new leader while a fresh standby waits: it resigns, c takes over at once.
    const third = await startReplica('replica-c');
    assert.equal(isLeader(third), false);
    const stoppedAt = Date.now();
    assert.equal(await second.stop(), 0);
    await eventually('c leads', () => isLeader(third), 10_000);
    const handoverSeconds = (Date.now() - stoppedAt) / 1000;
    await createPod('p5');
    const p5 = `${PREFIX}${await podIp('p5')}-86`;
    await eventually('p5 registered by c', async () => (await observer.snapshot(PREFIX)).has(p5), 10_000);
    assert.deepEqual(observer.deletesOf(keys), [], 'no DELETE of a live key');
    process.stdout.write(`# new pod registered ${takeoverSeconds.toFixed(1)} s after the leader was killed; SIGTERM handover ${handoverSeconds.toFixed(2)} s\n`);
  });

  it('fences a frozen leader: after SIGSTOP past the election TTL and SIGCONT, none of its writes apply', async () => {
    const leader = replicas.find((replica) => replica.proc.isRunning() && isLeader(replica));
    assert.ok(leader, 'a running leader');
    const standby = await startReplica('replica-d');
    leader.proc.signal('SIGSTOP');
    const frozenAt = Date.now();
    await eventually('d leads while the old leader is frozen', () => isLeader(standby), 15_000);
    const electedAfterSeconds = (Date.now() - frozenAt) / 1000;
    // Changes the old leader will see, with a stale view, when it wakes up.
    await cluster.kubectl(['delete', 'pod', 'p1', '-n', 'ha', '--grace-period=0', '--force']);
    await createPod('p6');
    const p6 = `${PREFIX}${await podIp('p6')}-86`;
    await eventually('p6 registered by d', async () => (await observer.snapshot(PREFIX)).has(p6), 10_000);
    const resumedAt = new Date().toISOString();
    leader.proc.signal('SIGCONT');
    // The deposed leader steps down to standby (no exit, no restart) and stays ready.
    await eventually('the old leader stepped down', () => leader.lines().some((line) => String(line['msg']).startsWith('leadership lost: stepping down to standby')), 20_000);
    assert.ok(leader.proc.isRunning(), 'the deposed leader keeps running as a standby');
    await eventually('the old leader is a ready standby', async () => (await fetch(`${leader.metricsUrl}/readyz`)).ok, 15_000);
    assert.match(await (await fetch(`${leader.metricsUrl}/metrics`)).text(), /etcd_registrar_leadership_changes_total\{event="lost"\} 1/);
    const applied = leader.audits().filter((r) => r.outcome === 'ok' && r.action !== 'skip' && String((r as unknown as { time: string }).time) >= resumedAt);
    assert.deepEqual(applied, [], 'no write of the old leader applied after the new election');
    // etcd converges to exactly the Ready pods' keys.
    await eventually('registry = Ready pods', async () => {
      const pods = JSON.parse((await cluster.kubectl(['get', 'pods', '-n', 'ha', '-o', 'json'])).stdout) as { items: Array<{ metadata: { deletionTimestamp?: string }; status: { podIP?: string } }> };
      const expected = pods.items.filter((p) => p.metadata.deletionTimestamp === undefined && p.status.podIP !== undefined).map((p) => `${PREFIX}${p.status.podIP}-86`).sort();
      return JSON.stringify([...(await observer.snapshot(PREFIX)).keys()].sort()) === JSON.stringify(expected);
    }, 15_000);
    process.stdout.write(`# frozen leader: standby elected ${electedAfterSeconds.toFixed(1)} s after the freeze (election TTL 2 s)\n`);
  });

  it('a deposed leader that stepped down takes over again when the new leader goes', async () => {
    const current = replicas.find((replica) => replica.proc.isRunning() && replica.lines().filter((line) => line['msg'] === 'elected leader').length > 0 && !replica.lines().some((line) => String(line['msg']).startsWith('leadership lost')));
    const steppedDown = replicas.find((replica) => replica.proc.isRunning() && replica.lines().some((line) => String(line['msg']).startsWith('leadership lost: stepping down')));
    assert.ok(current && steppedDown, 'a leader and a replica that stepped down');
    const electionsBefore = steppedDown.lines().filter((line) => line['msg'] === 'elected leader').length;
    current.proc.signal('SIGKILL');
    await current.proc.exited;
    await eventually('the stepped-down replica leads again', () => steppedDown.lines().filter((line) => line['msg'] === 'elected leader').length > electionsBefore, 20_000);
    await createPod('p8');
    const p8 = `${PREFIX}${await podIp('p8')}-86`;
    await eventually('p8 registered by the re-elected replica', async () => (await observer.snapshot(PREFIX)).has(p8), 15_000);
    assert.ok(steppedDown.audits().some((r) => r.outcome === 'ok' && r.key === p8), 'written by the replica that had stepped down');
  });

  it('rides out a kube-apiserver restart without deregistering live pods', async () => {
    const live = new Set([...(await observer.snapshot(PREFIX)).keys()]);
    assert.ok(live.size > 0);
    const from = observer.events.length;
    await cluster.restartApiServer();
    await createPod('p7');
    const p7 = `${PREFIX}${await podIp('p7')}-86`;
    await eventually('p7 registered after the restart', async () => (await observer.snapshot(PREFIX)).has(p7), 30_000);
    const deletes = observer.events.slice(from).filter((e) => e.type === 'delete' && live.has(e.key));
    assert.deepEqual(deletes, [], 'no DELETE of a live key across the API server restart');
  });
});
