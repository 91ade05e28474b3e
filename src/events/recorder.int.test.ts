// EventRecorder against a real kube-apiserver (test/cluster): the Event lands on the pod.
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { startCluster, type Cluster } from '../../test/cluster/cluster.ts';
import { waitFor } from '../../test/cluster/process.ts';
import type { KubeAccess } from '../source/kube-access.ts';
import { kubeAccessFromFile } from '../source/kube-access-resolve.ts';
import { EventRecorder } from './recorder.ts';

const logger = pino({ level: process.env['TEST_LOG_LEVEL'] ?? 'silent' });

interface EventView {
  metadata: { name: string };
  eventTime: string;
  reason: string;
  note: string;
  type: string;
  action: string;
  reportingController: string;
  reportingInstance: string;
  regarding: { kind: string; name: string; namespace: string; uid: string; apiVersion: string };
}

describe('EventRecorder against a real API server', () => {
  let cluster: Cluster;
  let kc: KubeAccess;
  const ns = 'events';
  let pod: { namespace: string; name: string; uid: string };

  async function events(): Promise<EventView[]> {
    const { stdout } = await cluster.kubectl(['get', 'events.events.k8s.io', '-n', ns, '-o', 'json']);
    return (JSON.parse(stdout) as { items: EventView[] }).items.filter(
      (e) => e.reportingController === 'etcd-registrar.io/controller',
    );
  }

  before(async () => {
    cluster = await startCluster();
    kc = await kubeAccessFromFile(cluster.kubeconfigPath);
    await cluster.createNamespace(ns);
    await cluster.kubectl(['run', 'web', '-n', ns, '--image=example.invalid/web:1']);
    const { stdout } = await cluster.kubectl(['get', 'pod', 'web', '-n', ns, '-o', 'jsonpath={.metadata.uid}']);
    pod = { namespace: ns, name: 'web', uid: stdout.trim() };
  });

  after(async () => {
    await cluster?.stop();
  });

  it('posts an events.k8s.io/v1 Event regarding the pod, visible in kubectl describe; duplicates dropped', async () => {
    const recorder = new EventRecorder({ kube: kc, logger, reportingInstance: 'registrar-0' });
    const note = 'port "http2" is not a named port of the pod (named ports: http)';
    recorder.record(pod, 'Warning', 'InvalidRegistration', note);
    recorder.record(pod, 'Warning', 'InvalidRegistration', note);
    recorder.record(pod, 'Normal', 'Registered', 'registered /web_PRE/10.244.0.5-8080 = 10.244.0.5:8080');
    await recorder.flush(10_000);
    assert.deepEqual(
      { ...recorder.stats() },
      {
        sent: 2, deduped: 1, dropped: 0, droppedRateLimited: 0, droppedQueueFull: 0,
        droppedInvalid: 0, droppedStopped: 0, failed: 0, queued: 0, inFlight: 0,
      },
    );

    const list = await waitFor('2 events', async () => {
      const e = await events();
      return e.length === 2 ? e : undefined;
    }, { timeoutMs: 5000 });
    const warning = list.find((e) => e.reason === 'InvalidRegistration');
    assert.ok(warning);
    assert.equal(warning.type, 'Warning');
    assert.equal(warning.note, note);
    assert.equal(warning.action, 'Validate');
    assert.equal(warning.reportingInstance, 'registrar-0');
    assert.match(warning.eventTime, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$/);
    assert.deepEqual(warning.regarding, { kind: 'Pod', apiVersion: 'v1', namespace: ns, name: 'web', uid: pod.uid });

    const { stdout } = await cluster.kubectl(['describe', 'pod', 'web', '-n', ns]);
    assert.match(stdout, /Warning\s+InvalidRegistration\s+.*etcd-registrar\.io\/controller/);
    assert.match(stdout, /Normal\s+Registered/);
  });

  it('a caller without RBAC for events: failures are counted, record() never throws', async () => {
    await cluster.kubectl(['create', 'serviceaccount', 'mute', '-n', ns]);
    const saKc = await kubeAccessFromFile(await cluster.serviceAccountKubeconfig(ns, 'mute'));
    const recorder = new EventRecorder({ kube: saKc, logger });
    assert.doesNotThrow(() => recorder.record(pod, 'Warning', 'RegistrationRefused', 'forbidden test'));
    await recorder.flush(10_000);
    assert.equal(recorder.stats().failed, 1);
    assert.equal(recorder.stats().sent, 0);
    assert.equal((await events()).some((e) => e.note === 'forbidden test'), false);
  });
});
