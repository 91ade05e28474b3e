import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { httpsGet, startCluster, type Cluster } from './cluster.ts';
import { waitFor } from './process.ts';

interface PodView {
  metadata: { name: string; deletionTimestamp?: string };
  status: { phase?: string; podIP?: string; conditions?: { type: string; status: string }[] };
}

function isReady(pod: PodView): boolean {
  return pod.status.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

describe('local cluster', () => {
  let cluster: Cluster;

  before(async () => {
    cluster = await startCluster();
  });

  after(async () => {
    await cluster?.stop();
  });

  async function getPods(namespace: string, selector?: string): Promise<PodView[]> {
    const args = ['get', 'pods', '-n', namespace, '-o', 'json', ...(selector === undefined ? [] : ['-l', selector])];
    const { stdout } = await cluster.kubectl(args);
    return (JSON.parse(stdout) as { items: PodView[] }).items;
  }

  async function getPod(namespace: string, name: string): Promise<PodView | undefined> {
    return (await getPods(namespace)).find((p) => p.metadata.name === name);
  }

  function podManifest(namespace: string, name: string, gracePeriodSeconds: number): string {
    return JSON.stringify({
      apiVersion: 'v1',
      kind: 'Pod',
      metadata: { name, namespace },
      spec: {
        terminationGracePeriodSeconds: gracePeriodSeconds,
        containers: [{ name: 'app', image: 'example.invalid/app:1' }],
      },
    });
  }

  async function createRunningPod(namespace: string, name: string, gracePeriodSeconds: number): Promise<void> {
    await cluster.kubectl(['apply', '-f', '-'], { input: podManifest(namespace, name, gracePeriodSeconds) });
    await waitFor(`pod ${name} Ready`, async () => {
      const pod = await getPod(namespace, name);
      return pod !== undefined && isReady(pod);
    }, { timeoutMs: 10_000 });
  }

  it('serves /readyz and reports version v1.35.x', async () => {
    const { stdout: readyz } = await cluster.kubectl(['get', '--raw', '/readyz']);
    assert.equal(readyz.trim(), 'ok');
    const { stdout } = await cluster.kubectl(['get', '--raw', '/version']);
    const version = JSON.parse(stdout) as { gitVersion: string; major: string; minor: string };
    assert.match(version.gitVersion, /^v1\.35\.\d+$/);
    assert.equal(version.major, '1');
    assert.equal(version.minor, '35');
  });

  it('runs two healthy etcds: API storage and the separate registry', async () => {
    assert.notDeepEqual(cluster.registry.endpoints, cluster.apiEtcd.endpoints);
    for (const etcd of [cluster.apiEtcd, cluster.registry]) {
      const res = await fetch(`${etcd.endpoints[0]}/health`);
      assert.equal(res.status, 200);
      assert.deepEqual(await res.json(), { health: 'true', reason: '' });
    }
  });

  it('has Ready fake nodes spread over zones', async () => {
    const { stdout } = await cluster.kubectl(['get', 'nodes', '-o', 'json']);
    const nodes = (JSON.parse(stdout) as { items: { metadata: { labels: Record<string, string> } }[] }).items;
    assert.equal(nodes.length, cluster.nodeNames.length);
    const zones = new Set(nodes.map((n) => n.metadata.labels['topology.kubernetes.io/zone']));
    assert.ok(zones.size >= 2, `zones: ${[...zones].join(',')}`);
  });

  it('brings a Deployment of 3 replicas to 3 Ready pods with distinct IPs within 10 s', async () => {
    await cluster.createNamespace('deploy');
    const started = Date.now();
    await cluster.kubectl(['create', 'deployment', 'web', '-n', 'deploy', '--image=example.invalid/web:1', '--replicas=3']);
    const pods = await waitFor('3 Ready pods', async () => {
      const ready = (await getPods('deploy', 'app=web')).filter(isReady);
      return ready.length === 3 ? ready : undefined;
    }, { timeoutMs: 10_000 });
    const ips = pods.map((p) => p.status.podIP);
    assert.ok(ips.every((ip) => ip?.startsWith('10.244.') === true), `pod IPs: ${ips.join(',')}`);
    assert.equal(new Set(ips).size, 3, `pod IPs: ${ips.join(',')}`);
    assert.ok(Date.now() - started < 10_000);
  });

  it('keeps a gracefully deleted pod Terminating; a forced delete removes it at once', async () => {
    await cluster.createNamespace('grace');
    await Promise.all([createRunningPod('grace', 'slow', 30), createRunningPod('grace', 'forced', 30)]);

    await cluster.kubectl(['delete', 'pod', 'slow', '-n', 'grace', '--wait=false']);
    await sleep(1000);
    const slow = await getPod('grace', 'slow');
    assert.ok(slow !== undefined, 'pod deleted with a 30 s grace period is gone after 1 s');
    assert.ok(slow.metadata.deletionTimestamp !== undefined);

    await cluster.kubectl(['delete', 'pod', 'forced', '-n', 'grace', '--grace-period=0', '--force']);
    assert.equal(await getPod('grace', 'forced'), undefined);
  });

  it('removes a deleted pod within its grace period, as a kubelet would', async () => {
    await cluster.createNamespace('grace-short');
    await createRunningPod('grace-short', 'short', 5);
    const deleted = Date.now();
    await cluster.kubectl(['delete', 'pod', 'short', '-n', 'grace-short', '--wait=false']);
    await waitFor('pod removed', async () => (await getPod('grace-short', 'short')) === undefined, {
      timeoutMs: 8000,
      intervalMs: 200,
    });
    assert.ok(Date.now() - deleted >= 1000, 'removed before any termination time');
  });

  it('opt-in pod annotations: readiness left to someone else; removal at the end of the grace period', async () => {
    await cluster.createNamespace('opt-in');
    const annotated = JSON.parse(podManifest('opt-in', 'external', 8)) as { metadata: Record<string, unknown> };
    annotated.metadata['annotations'] = { 'test.etcd-registrar.io/readiness': 'external', 'pod-delete.stage.kwok.x-k8s.io/delay': '1h' };
    await cluster.kubectl(['apply', '-f', '-'], { input: JSON.stringify(annotated) });
    await createRunningPod('opt-in', 'plain', 8);
    await waitFor('external Running with an IP', async () => {
      const pod = await getPod('opt-in', 'external');
      return pod?.status.phase === 'Running' && (pod.status.podIP ?? '') !== '';
    }, { timeoutMs: 10_000 });
    const external = await getPod('opt-in', 'external');
    assert.ok(external !== undefined && !isReady(external), 'KWOK leaves the annotated pod unready');
    await cluster.kubectl(['patch', 'pod', 'external', '-n', 'opt-in', '--subresource=status', '--type=strategic', '-p',
      JSON.stringify({ status: { conditions: [{ type: 'Ready', status: 'True' }] } })]);
    assert.ok(isReady((await getPod('opt-in', 'external'))!), 'and keeps the Ready set by someone else');

    // A delay longer than the grace period: removed at the deletionTimestamp (1 s resolution), not before.
    const deleted = Date.now();
    await cluster.kubectl(['delete', 'pod', 'external', '-n', 'opt-in', '--wait=false']);
    await waitFor('external removed', async () => (await getPod('opt-in', 'external')) === undefined, { timeoutMs: 15_000, intervalMs: 100 });
    const lived = Date.now() - deleted;
    assert.ok(lived >= 6500 && lived < 10_000, `removed ${lived} ms after the delete (grace period 8 s)`);
  });

  it('gives a ServiceAccount kubeconfig exactly the RoleBinding permissions', async () => {
    const ns = 'sa-test';
    await cluster.createNamespace(ns);
    await cluster.kubectl(['create', 'serviceaccount', 'reader', '-n', ns]);
    await cluster.kubectl(['create', 'role', 'pod-reader', '-n', ns, '--verb=get,list,watch', '--resource=pods']);
    await cluster.kubectl(['create', 'rolebinding', 'reader', '-n', ns, '--role=pod-reader', `--serviceaccount=${ns}:reader`]);
    const kubeconfig = await cluster.serviceAccountKubeconfig(ns, 'reader');

    const { stdout } = await cluster.kubectl(['auth', 'whoami', '-o', 'jsonpath={.status.userInfo.username}'], { kubeconfig });
    assert.equal(stdout, `system:serviceaccount:${ns}:reader`);
    await cluster.kubectl(['get', 'pods', '-n', ns], { kubeconfig });
    await assert.rejects(cluster.kubectl(['get', 'secrets', '-n', ns], { kubeconfig }), /Forbidden/);
    await assert.rejects(cluster.kubectl(['get', 'pods', '-n', 'default'], { kubeconfig }), /Forbidden/);

    const token = /token: "([^"]+)"/.exec(await readFile(kubeconfig, 'utf8'))?.[1];
    assert.ok(token !== undefined);
    const tls = { ca: await readFile(cluster.caPath), headers: { authorization: `Bearer ${token}` } };
    assert.equal((await httpsGet(`${cluster.apiServerUrl}/api/v1/namespaces/${ns}/pods`, tls)).status, 200);
    assert.equal((await httpsGet(`${cluster.apiServerUrl}/api/v1/namespaces/${ns}/secrets`, tls)).status, 403);
  });

  it('restarts the API server on the same URL with its data intact', async () => {
    await cluster.kubectl(['create', 'configmap', 'survivor', '-n', 'default', '--from-literal=k=v']);
    await cluster.restartApiServer();
    const { stdout } = await cluster.kubectl(['get', 'configmap', 'survivor', '-n', 'default', '-o', 'jsonpath={.data.k}']);
    assert.equal(stdout, 'v');
  });
});
