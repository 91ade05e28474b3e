// Node zones end to end: the real `etcd-registrar run` against a real kube-apiserver with
// KWOK nodes (labelled topology.kubernetes.io/zone zone-a/b/c) and a real registry etcd.
// Two controllers watch the same pods: "json" writes the JSON value (zone from the node),
// "zoned" puts the zone in the key ({zone}). Relabelling a node must repair the one's value
// and move the other's key, and leave pods on other nodes alone.
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startCluster, type Cluster } from '../cluster/cluster.ts';
import { eventually, keyState as etcdKeyState, RegistryObserver, startController, waitPodReadyIp, type ControllerProcess } from './support.ts';

const ZONE_LABEL = 'topology.kubernetes.io/zone';
const NAMESPACE = 'zones';

let cluster: Cluster;
let observer: RegistryObserver;
let json: ControllerProcess | undefined;
let zoned: ControllerProcess | undefined;

async function kubectl(...command: string[]): Promise<string> {
  return (await cluster.kubectl(command)).stdout;
}

/** A Ready pod pinned to a node; resolves to its IP. */
async function createPod(name: string, node: string): Promise<string> {
  await cluster.kubectl(['apply', '-f', '-'], {
    input: JSON.stringify({
      apiVersion: 'v1', kind: 'Pod',
      metadata: { name, namespace: NAMESPACE, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'search', 'etcd-registrar.io/port': '86' } },
      spec: { nodeName: node, containers: [{ name: 'app', image: 'search:1' }] },
    }),
  });
  return waitPodReadyIp(cluster, NAMESPACE, name);
}

const keyState = (key: string): ReturnType<typeof etcdKeyState> => etcdKeyState(observer.client, key);

async function nodeZone(node: string): Promise<string> {
  return (await kubectl('get', 'node', node, '-o', `jsonpath={.metadata.labels.${ZONE_LABEL.replaceAll('.', '\\.')}}`)).trim();
}

function common(owner: string): string[] {
  return ['--environment', 'PRE', '--owner-id', owner, '--lease-ttl', '10s', '--reconcile-interval', '2s', '--namespaces', NAMESPACE];
}

before(async () => {
  cluster = await startCluster();
  await kubectl('create', 'namespace', NAMESPACE);
  observer = new RegistryObserver(cluster.registry.endpoints);
});

after(async () => {
  await json?.stop();
  await zoned?.stop();
  await observer?.close();
  await cluster?.stop();
});

describe('node zones', () => {
  const nodeB = 'kwok-node-1';
  const nodeC = 'kwok-node-2';
  let ipB = '';
  let ipC = '';
  const jsonKey = (ip: string): string => `/plain/search_PRE/${ip}-86`;
  const zonedKey = (zone: string, ip: string): string => `/zoned/${zone}/search_PRE/${ip}-86`;
  const expectedValue = (ip: string, pod: string, node: string, zone: string): string =>
    JSON.stringify({ host: ip, port: 86, service: 'search', environment: 'PRE', pod, namespace: NAMESPACE, node, zone });

  it('--value-format json: the value carries the zone label of the pod\'s node; {zone} puts it in the key', async () => {
    // The test cluster labels its KWOK nodes zone-a, zone-b, zone-c in turn.
    assert.equal(await nodeZone(nodeB), 'zone-b');
    assert.equal(await nodeZone(nodeC), 'zone-c');
    json = await startController({
      kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, name: 'json',
      extraArgs: [...common('zone-json'), '--key-root', '/plain', '--key-template', '/plain/{service}_{environment}/{ip}-{port}', '--value-format', 'json'],
    });
    zoned = await startController({
      kubeconfig: cluster.kubeconfigPath, etcdEndpoints: cluster.registry.endpoints, name: 'zoned',
      extraArgs: [...common('zone-keys'), '--key-root', '/zoned', '--key-template', '/zoned/{zone}/{service}_{environment}/{ip}-{port}', '--value-template', '{ip}:{port}@{zone}'],
    });
    await Promise.all([json.waitReady(), zoned.waitReady()]);
    ipB = await createPod('search-b', nodeB);
    ipC = await createPod('search-c', nodeC);
    await eventually('JSON values registered', async () =>
      (await keyState(jsonKey(ipB)))?.value === expectedValue(ipB, 'search-b', nodeB, 'zone-b') &&
      (await keyState(jsonKey(ipC)))?.value === expectedValue(ipC, 'search-c', nodeC, 'zone-c'));
    const value = JSON.parse((await keyState(jsonKey(ipB)))?.value ?? '{}') as { zone?: string };
    assert.equal(value.zone, await nodeZone(nodeB));
    await eventually('zoned keys registered', async () =>
      (await keyState(zonedKey('zone-b', ipB)))?.value === `${ipB}:86@zone-b` &&
      (await keyState(zonedKey('zone-c', ipC)))?.value === `${ipC}:86@zone-c`);
    assert.equal((await keyState(jsonKey(ipB)))?.lease, await observer.dataLease('zone-json'));
    assert.equal((await keyState(zonedKey('zone-b', ipB)))?.lease, await observer.dataLease('zone-keys'));
    assert.equal((await observer.snapshot('/plain/')).size, 2);
    assert.equal((await observer.snapshot('/zoned/')).size, 2);
  });

  it('relabelling a node\'s zone repairs the JSON value and moves the {zone} key of its pods only', async () => {
    assert.ok(json && zoned);
    const untouchedJson = await keyState(jsonKey(ipC));
    const untouchedZoned = await keyState(zonedKey('zone-c', ipC));
    const before = await keyState(jsonKey(ipB));
    const started = Date.now();
    await kubectl('label', 'node', nodeB, `${ZONE_LABEL}=zone-x`, '--overwrite');
    await eventually('JSON value repaired', async () => (await keyState(jsonKey(ipB)))?.value === expectedValue(ipB, 'search-b', nodeB, 'zone-x'));
    const repairedMs = Date.now() - started;
    await eventually('zoned key moved', async () =>
      (await keyState(zonedKey('zone-x', ipB)))?.value === `${ipB}:86@zone-x` && (await keyState(zonedKey('zone-b', ipB))) === undefined);
    const movedMs = Date.now() - started;
    console.error(`# zone relabel -> JSON value repaired in ${String(repairedMs)} ms, {zone} key moved in ${String(movedMs)} ms`);
    // A repair in place: same key, same lease, new revision.
    const after = await keyState(jsonKey(ipB));
    assert.equal(after?.lease, before?.lease);
    assert.notEqual(after?.modRevision, before?.modRevision);
    await eventually('repair audited', () => json?.audits().some((r) => r.action === 'repair' && r.key === jsonKey(ipB)) === true);
    const repair = json.audits().find((r) => r.action === 'repair' && r.key === jsonKey(ipB));
    assert.equal(repair?.pod, `${NAMESPACE}/search-b`);
    assert.equal(repair?.outcome, 'ok');
    // Pods on other nodes: not a single write.
    assert.deepEqual(await keyState(jsonKey(ipC)), untouchedJson);
    assert.deepEqual(await keyState(zonedKey('zone-c', ipC)), untouchedZoned);
    assert.deepEqual([...(await observer.snapshot('/zoned/')).keys()].sort(), [zonedKey('zone-c', ipC), zonedKey('zone-x', ipB)].sort());
    // Later reconciles find nothing to do (stable bytes): no further write to the repaired key.
    const passes = (): number => json?.lines().filter((line) => line['msg'] === 'reconcile planned').length ?? 0;
    const from = passes();
    await eventually('two more reconciles', () => passes() >= from + 2, 15_000);
    assert.deepEqual(await keyState(jsonKey(ipB)), after);
  });

  it('a zone label that cannot go into a key holds the pod\'s key (invalid, Warning event) and the JSON value is ""', async () => {
    assert.ok(json && zoned);
    await kubectl('label', 'node', nodeB, `${ZONE_LABEL}-`);
    await eventually('JSON zone is empty', async () => (await keyState(jsonKey(ipB)))?.value === expectedValue(ipB, 'search-b', nodeB, ''));
    await eventually('InvalidRegistration audited by the {zone} controller', () =>
      zoned?.audits().some((r) => r.action === 'skip' && r.pod === `${NAMESPACE}/search-b` && /has no zone label/.test(r.reason)) === true);
    await eventually('Warning InvalidRegistration on search-b', async () => {
      const list = JSON.parse(await kubectl('get', 'events.events.k8s.io', '-n', NAMESPACE, '--field-selector', 'regarding.name=search-b', '-o', 'json')) as { items: Array<{ type: string; reason: string; note?: string }> };
      return list.items.some((e) => e.type === 'Warning' && e.reason === 'InvalidRegistration' && /node "kwok-node-1" has no zone label/.test(e.note ?? ''));
    });
    // Its last valid key stays: a node losing its label must not take a live pod out of service.
    assert.equal((await keyState(zonedKey('zone-x', ipB)))?.value, `${ipB}:86@zone-x`);
    await kubectl('label', 'node', nodeB, `${ZONE_LABEL}=zone-b`);
    await eventually('zoned key back in zone-b', async () =>
      (await keyState(zonedKey('zone-b', ipB))) !== undefined && (await keyState(zonedKey('zone-x', ipB))) === undefined);
    const log = json.lines().concat(zoned.lines());
    assert.ok(!log.some((line) => /forbidden/i.test(JSON.stringify(line))), 'no RBAC denial in the logs');
  });
});
