// Protobuf intake against a real kube-apiserver (test/cluster): the same pods, nodes and
// namespaces, listed and watched as JSON and as protobuf, give deep-equal slim records. Pods
// carry every field the mapping reads (IPv4, IPv6 and dual-stack IPs, host IPs, several
// containers with named, unnamed and UDP ports, host network, labels, annotations, conditions,
// a deletionTimestamp held by a finalizer).
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { CoreV1Api, type V1Pod, type V1PodCondition, type V1PodStatus } from '@kubernetes/client-node';
import { pino } from 'pino';
import { startCluster, type Cluster } from '../../test/cluster/cluster.ts';
import { waitFor } from '../../test/cluster/process.ts';
import type { SlimPod } from '../types.ts';
import type { KubeAccess } from './kube-access.ts';
import { sharedConnectionKubeConfig } from './kube-access-client-node.ts';
import { kubeAccessFromFile } from './kube-access-resolve.ts';
import { KubeHttpError, kubeListerWatcher, listPage, watchStream, type KubeContentType } from './kube-http.ts';
import { NamespaceSource } from './namespace-source.ts';
import { NodeSource } from './node-source.ts';
import { PodSource, podKind } from './pod-source.ts';
import { decodeMetadataObject, decodePod, type ObjectDecoder, type Reader } from './protobuf.ts';

const NS = 'protobuf';
const PATH = `/api/v1/namespaces/${NS}/pods`;
const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

/** A decoder that counts its calls: proof that the server answered protobuf. */
function counting(decoder: ObjectDecoder): ObjectDecoder & { calls: number } {
  const f = Object.assign((r: Reader) => {
    f.calls++;
    return decoder(r);
  }, { calls: 0 });
  return f;
}

const conditions = (ready: boolean): V1PodCondition[] =>
  ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready'].map((type) => ({
    type,
    status: type === 'Ready' || type === 'ContainersReady' ? (ready ? 'True' : 'False') : 'True',
    lastTransitionTime: new Date(),
  }));

interface PodCase {
  name: string;
  spec?: Partial<NonNullable<V1Pod['spec']>>;
  status: V1PodStatus;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  finalizers?: string[];
}

const CASES: PodCase[] = [
  {
    name: 'ipv4-multi-port',
    labels: { app: 'web', tier: 'front', 'example.com/prefixed': 'yes' },
    annotations: { 'etcd-registrar.io/service': 'web', note: 'héllo wörld ✓', empty: '', big: 'x'.repeat(20_000) },
    spec: {
      containers: [
        { name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }, { containerPort: 7000 }, { name: 'dns', containerPort: 53, protocol: 'UDP' }] },
        { name: 'sidecar', image: 'example.invalid/side:1', ports: [{ name: 'metrics', containerPort: 9090 }, { name: 'http', containerPort: 8081 }] },
        { name: 'no-ports', image: 'example.invalid/none:1' },
      ],
      initContainers: [{ name: 'init', image: 'example.invalid/init:1', ports: [{ name: 'init-port', containerPort: 1234 }] }],
    },
    status: {
      phase: 'Running',
      podIP: '10.244.1.10',
      podIPs: [{ ip: '10.244.1.10' }],
      hostIP: '10.243.0.10',
      hostIPs: [{ ip: '10.243.0.10' }],
      conditions: conditions(true),
      startTime: new Date(),
      containerStatuses: [{ name: 'app', image: 'example.invalid/app:1', imageID: '', ready: true, restartCount: 2, started: true, state: { running: { startedAt: new Date() } } }],
    },
  },
  {
    name: 'ipv6-only',
    labels: { app: 'v6' },
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'grpc', containerPort: 50051 }] }] },
    status: { phase: 'Running', podIP: 'fd00:10:244::7', podIPs: [{ ip: 'fd00:10:244::7' }], hostIP: 'fd00:10:243::1', hostIPs: [{ ip: 'fd00:10:243::1' }], conditions: conditions(true) },
  },
  {
    name: 'dual-stack',
    labels: { app: 'dual' },
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 80 }, { name: 'https', containerPort: 443 }] }] },
    status: {
      phase: 'Running',
      podIP: '10.244.2.20',
      podIPs: [{ ip: '10.244.2.20' }, { ip: 'fd00:10:244::20' }],
      hostIP: '10.243.0.11',
      hostIPs: [{ ip: '10.243.0.11' }, { ip: 'fd00:10:243::11' }],
      conditions: conditions(true),
    },
  },
  {
    name: 'host-network',
    labels: { app: 'hostnet' },
    spec: { hostNetwork: true, containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 8088, hostPort: 8088 }] }] },
    status: { phase: 'Running', podIP: '10.243.0.12', podIPs: [{ ip: '10.243.0.12' }], hostIP: '10.243.0.12', hostIPs: [{ ip: '10.243.0.12' }], conditions: conditions(true) },
  },
  {
    name: 'not-ready',
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] },
    status: { phase: 'Pending', conditions: conditions(false) },
  },
  {
    name: 'terminating',
    labels: { app: 'web' },
    finalizers: ['example.com/hold'],
    spec: { containers: [{ name: 'app', image: 'example.invalid/app:1', ports: [{ name: 'http', containerPort: 8080 }] }] },
    status: { phase: 'Running', podIP: '10.244.1.30', podIPs: [{ ip: '10.244.1.30' }], hostIP: '10.243.0.10', conditions: conditions(true) },
  },
];

const byUid = (pods: readonly SlimPod[]): SlimPod[] => [...pods].sort((a, b) => a.uid.localeCompare(b.uid));

describe('protobuf intake against a real API server: the same slim records as JSON', () => {
  let cluster: Cluster;
  let kc: KubeAccess;
  let core: CoreV1Api;
  let startRv = '';
  const open: { abort(): void }[] = [];
  const sources: { stop(): Promise<void> | void }[] = [];
  /** Raw watch events per content type, slimmed, from startRv. */
  const watched: Record<KubeContentType, { type: string; pod: SlimPod | undefined; code?: unknown }[]> = { json: [], protobuf: [] };
  const watchDecoder = counting(decodePod);

  async function applyCase(c: PodCase): Promise<void> {
    const created = await core.createNamespacedPod({
      namespace: NS,
      body: {
        metadata: { name: c.name, labels: c.labels ?? {}, annotations: c.annotations ?? {}, finalizers: c.finalizers ?? [] },
        // A node no kubelet or KWOK serves: nobody but this test writes the status.
        spec: { nodeName: 'protobuf-nobody', terminationGracePeriodSeconds: 0, containers: [], ...c.spec },
      },
    });
    await core.replaceNamespacedPodStatus({ name: c.name, namespace: NS, body: { ...created, status: c.status } });
  }

  before(async () => {
    cluster = await startCluster({ nodes: 2 });
    kc = await kubeAccessFromFile(cluster.kubeconfigPath);
    const client = await sharedConnectionKubeConfig();
    client.loadFromFile(cluster.kubeconfigPath);
    core = client.makeApiClient(CoreV1Api);
    await cluster.createNamespace(NS);
    startRv = (await listPage(kc, PATH, { limit: 1, continueToken: undefined })).resourceVersion;
    for (const contentType of ['json', 'protobuf'] as const) {
      open.push(
        await watchStream(
          kc,
          PATH,
          { resourceVersion: startRv, timeoutSeconds: 300, inactivityMs: 300_000, decoder: contentType === 'protobuf' ? watchDecoder : undefined },
          (type, object) => {
            const code = (object as { code?: unknown }).code;
            watched[contentType].push({ type, pod: type === 'BOOKMARK' ? undefined : podKind.valueOf(object as object), ...(code === undefined ? {} : { code }) });
          },
          (err) => watched[contentType].push({ type: `done ${String(err)}`, pod: undefined }),
        ),
      );
    }
    for (const c of CASES) await applyCase(c);
    // A deletionTimestamp that stays: the finalizer holds the pod.
    await core.deleteNamespacedPod({ name: 'terminating', namespace: NS });
    // A pod that goes away (a DELETED event) and a label change (a MODIFIED event).
    await applyCase({ name: 'short-lived', spec: { containers: [{ name: 'app', image: 'example.invalid/app:1' }] }, status: { phase: 'Running', podIP: '10.244.9.9', conditions: conditions(true) } });
    await core.deleteNamespacedPod({ name: 'short-lived', namespace: NS, body: { gracePeriodSeconds: 0 } });
    await cluster.kubectl(['label', 'pod', '-n', NS, 'dual-stack', 'changed=yes']);
  });

  after(async () => {
    for (const h of open) h.abort();
    for (const s of sources) await s.stop();
    // Release the finalizer so the namespace could go; the cluster is removed anyway.
    await cluster?.kubectl(['patch', 'pod', '-n', NS, 'terminating', '--type=merge', '-p', '{"metadata":{"finalizers":null}}']).catch(() => undefined);
    await cluster?.stop();
  });

  it('lists: every pod gives the same slim record from JSON and from protobuf', async () => {
    const decoder = counting(decodePod);
    const json = await listPage(kc, PATH, { limit: 500, continueToken: undefined });
    const proto = await listPage(kc, PATH, { limit: 500, continueToken: undefined, decoder });
    assert.equal(decoder.calls, CASES.length, 'the server answered protobuf: every item went through the decoder');
    const slim = (items: readonly unknown[]): SlimPod[] => byUid(items.map((i) => podKind.valueOf(i as object)).filter((p): p is SlimPod => p !== undefined));
    const fromJson = slim(json.items);
    assert.equal(fromJson.length, CASES.length);
    assert.deepEqual(slim(proto.items), fromJson);
    assert.equal(proto.resourceVersion, json.resourceVersion);

    // The records hold what the cases set (so equality is not two empty objects).
    const one = (name: string): SlimPod => fromJson.find((p) => p.name === name)!;
    assert.deepEqual(one('ipv4-multi-port').namedPorts, { http: 8080, dns: 53, metrics: 9090 });
    assert.equal(one('ipv4-multi-port').annotations['big']?.length, 20_000);
    assert.equal(one('ipv4-multi-port').labels['example.com/prefixed'], 'yes');
    assert.equal(one('ipv4-multi-port').annotations['note'], 'héllo wörld ✓');
    assert.deepEqual(one('ipv6-only').podIPs, ['fd00:10:244::7']);
    assert.deepEqual(one('ipv6-only').hostIPs, ['fd00:10:243::1']);
    assert.deepEqual(one('dual-stack').podIPs, ['10.244.2.20', 'fd00:10:244::20']);
    assert.deepEqual(one('dual-stack').hostIPs, ['10.243.0.11', 'fd00:10:243::11']);
    assert.equal(one('host-network').hostIP, '10.243.0.12');
    assert.equal(one('not-ready').ready, false);
    assert.equal(one('not-ready').phase, 'Pending');
    assert.equal(one('terminating').terminating, true);
    assert.equal(one('ipv4-multi-port').terminating, false);
    assert.match(one('ipv4-multi-port').creationTimestamp, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z$/);

    // Pages: the continue token from a protobuf list works, and pages hold the same pods.
    const names: string[] = [];
    let continueToken: string | undefined;
    do {
      const page = await listPage(kc, PATH, { limit: 2, continueToken, decoder: decodePod });
      names.push(...page.items.map((i) => (i as { metadata: { name: string } }).metadata.name));
      continueToken = page.continueToken;
    } while (continueToken !== undefined);
    assert.deepEqual(names.sort(), fromJson.map((p) => p.name).sort());
  });

  it('watches: the same events in the same order, with the same slim records', async () => {
    // The label change is the last write: once both saw it, both saw everything before it.
    const sawLast = (ct: KubeContentType) => watched[ct].some((e) => e.pod?.name === 'dual-stack' && e.pod.labels['changed'] === 'yes');
    await waitFor('both watches saw the last change', async () => (sawLast('json') && sawLast('protobuf') ? true : undefined), { timeoutMs: 20_000, intervalMs: 20 });
    const events = (ct: KubeContentType) => watched[ct].filter((e) => e.type !== 'BOOKMARK');
    // created + status per case, the terminating delete, short-lived (3), the label.
    const count = CASES.length * 2 + 1 + 3 + 1;
    assert.ok(events('json').length >= count, `${events('json').length} events`);
    assert.ok(watchDecoder.calls >= count, 'the watch answered protobuf frames');
    assert.deepEqual(events('protobuf'), events('json'));
    const types = events('json').map((e) => e.type);
    assert.ok(types.includes('ADDED') && types.includes('MODIFIED') && types.includes('DELETED'), types.join(','));
    assert.ok(!types.some((t) => t.startsWith('done')), 'no watch ended');
    const last = events('json').filter((e) => e.pod?.name === 'dual-stack').at(-1);
    assert.equal(last?.pod?.labels['changed'], 'yes');
  });

  it('PodSource over protobuf and over JSON keeps the same cache, through watch changes', async () => {
    const start = (contentType: KubeContentType): PodSource => {
      const s = new PodSource({ kube: kc, contentType, namespaces: [NS], logger, backoff: { baseMs: 100, maxMs: 1000 } });
      sources.push(s);
      return s;
    };
    const json = start('json');
    const proto = start('protobuf');
    await Promise.all([json.start(), proto.start()]);
    assert.deepEqual(byUid(proto.list()), byUid(json.list()));
    assert.equal(json.list().length, CASES.length);

    await cluster.kubectl(['annotate', 'pod', '-n', NS, 'ipv6-only', 'etcd-registrar.io/port=grpc']);
    const annotated = (s: PodSource) => s.list().find((p) => p.name === 'ipv6-only')?.annotations['etcd-registrar.io/port'] === 'grpc';
    await waitFor('both caches saw the annotation', async () => (annotated(json) && annotated(proto) ? true : undefined), { timeoutMs: 10_000, intervalMs: 20 });
    assert.deepEqual(byUid(proto.list()), byUid(json.list()));
    assert.ok(proto.stats().watchEvents >= 1);
  });

  it('nodes and namespaces: the same values over protobuf and JSON, through watch changes', async () => {
    await cluster.kubectl(['annotate', 'namespace', NS, 'etcd-registrar.io/allowed-services=web,dual']);
    const namespaces = (contentType: KubeContentType) => new NamespaceSource({ kube: kc, contentType, logger, annotation: 'etcd-registrar.io/allowed-services' });
    const nodes = (contentType: KubeContentType) => new NodeSource({ kube: kc, contentType, logger });
    const [nsJson, nsProto, nodeJson, nodeProto] = [namespaces('json'), namespaces('protobuf'), nodes('json'), nodes('protobuf')];
    sources.push(nsJson, nsProto, nodeJson, nodeProto);
    await Promise.all([nsJson.start(), nsProto.start(), nodeJson.start(), nodeProto.start()]);
    const sorted = <T extends { name: string }>(l: readonly T[]) => [...l].sort((a, b) => a.name.localeCompare(b.name));
    assert.deepEqual(sorted(nsProto.list()), sorted(nsJson.list()));
    assert.deepEqual(sorted(nodeProto.list()), sorted(nodeJson.list()));
    assert.equal(nsProto.annotation(NS), 'web,dual');
    const node = nodeJson.list()[0]?.name;
    assert.ok(node !== undefined && nodeProto.zone(node) !== undefined && nodeProto.zone(node) !== '', 'KWOK nodes carry a zone');

    await cluster.kubectl(['label', 'node', node, '--overwrite', 'topology.kubernetes.io/zone=zone-moved']);
    await cluster.kubectl(['annotate', 'namespace', NS, '--overwrite', 'etcd-registrar.io/allowed-services=web']);
    await waitFor('every source saw the changes', async () => ([nodeJson, nodeProto].every((s) => s.zone(node) === 'zone-moved') && [nsJson, nsProto].every((s) => s.annotation(NS) === 'web') ? true : undefined), { timeoutMs: 10_000, intervalMs: 20 });
    assert.deepEqual(sorted(nodeProto.list()), sorted(nodeJson.list()));
    assert.deepEqual(sorted(nsProto.list()), sorted(nsJson.list()));
  });

  it('an error answer in protobuf gives the Status message (403 of a ServiceAccount without rights)', async () => {
    const path = await cluster.serviceAccountKubeconfig(NS, 'default');
    const denied = await kubeAccessFromFile(path);
    const lw = kubeListerWatcher(denied, { apiPath: '/api/v1', resource: 'pods' }, { watchInactivityMs: 60_000, contentType: 'protobuf' });
    await assert.rejects(lw.list({ namespace: NS, limit: 10, continueToken: undefined }), (err: unknown) => {
      assert.ok(err instanceof KubeHttpError);
      assert.equal(err.statusCode, 403);
      assert.match(err.message, /pods is forbidden: User "system:serviceaccount:protobuf:default" cannot list resource "pods"/);
      return true;
    });
    // The metadata-only decoder reads a Namespace list too (same envelope, same ListMeta).
    const page = await listPage(kc, '/api/v1/namespaces', { limit: 100, continueToken: undefined, decoder: decodeMetadataObject });
    assert.ok(page.items.some((i) => (i as { metadata?: { name?: string } }).metadata?.name === NS));
  });
});
