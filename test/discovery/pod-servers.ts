// "Pod servers": makes KWOK's pods really serve. A separate process follows the pods of one
// namespace through the API server and, for each Running pod with an IP and container ports,
// listens on IP:port (the cluster's pod CIDR is in 127.0.0.0/8, so every pod IP is local) and
// answers HTTP 200 with the pod's name. It keeps serving until the pod object is gone, i.e.
// through the termination grace period, like a container that handles SIGTERM late; only then
// are its listeners closed (connections refused from then on, as with a stopped container).
// Pods annotated test.etcd-registrar.io/readiness=external are left unready by KWOK
// (kwok-stages.yaml): this process sets them Ready once all their ports listen, as a
// readiness probe would, so no pod is Ready (and registered) before it can answer.
//
// Usage: node test/discovery/pod-servers.ts KUBECONFIG NAMESPACE
// One JSON line per event on stdout, with `at` in ms since the epoch (the runner reads them):
//   {"event":"ready","pod":...,"at":...}        the pod turned Ready (seen through the watch)
//   {"event":"terminating","pod":...,"at":...}  deletionTimestamp appeared
//   {"event":"listening","pod":...,"ip":...,"port":...,"at":...}
//   {"event":"gone","pod":...,"requests":N,"lastRequestAt":...,"at":...}  listeners closed
import { createServer, type Server } from 'node:http';
import { CoreV1Api, KubeConfig, makeInformer, PatchStrategy, setHeaderOptions, type V1Pod } from '@kubernetes/client-node';

/** The pod annotation that hands a pod's readiness to this process (see kwok-stages.yaml). */
export const EXTERNAL_READINESS_ANNOTATION = 'test.etcd-registrar.io/readiness';

export interface PodServerEvent {
  readonly event: 'ready' | 'terminating' | 'listening' | 'gone' | 'started' | 'error';
  readonly pod: string;
  readonly at: number;
  readonly ip?: string;
  readonly port?: number;
  readonly requests?: number;
  readonly lastRequestAt?: number;
  readonly message?: string;
}

interface Served {
  readonly name: string;
  readonly servers: Map<string, Server>;
  /** ip:port keys listening now. */
  readonly listening: Set<string>;
  /** Set Ready once every port listens (external readiness). */
  onAllListening: (() => void) | undefined;
  readyRequested: boolean;
  wantedPorts: number;
  requests: number;
  lastRequestAt: number;
  ready: boolean;
  terminating: boolean;
  gone: boolean;
}

function emit(event: PodServerEvent): void {
  process.stdout.write(`${JSON.stringify(event)}\n`);
}

const LISTEN_RETRY_MS = 50;

/** Listens on ip:port, retrying while the address is still held by a pod being removed. */
function listen(served: Served, ip: string, port: number): void {
  const key = `${ip}:${String(port)}`;
  if (served.servers.has(key) || served.gone) return;
  const body = `${served.name}\n`;
  const server = createServer((_req, res) => {
    served.requests++;
    served.lastRequestAt = Date.now();
    res.writeHead(200, { 'content-type': 'text/plain', 'content-length': String(Buffer.byteLength(body)) });
    res.end(body);
  });
  served.servers.set(key, server);
  server.on('error', (error: NodeJS.ErrnoException) => {
    served.servers.delete(key);
    if (served.gone) return;
    // A new pod can get the IP of one whose removal we have not seen yet.
    if (error.code === 'EADDRINUSE') setTimeout(() => listen(served, ip, port), LISTEN_RETRY_MS);
    else emit({ event: 'error', pod: served.name, at: Date.now(), ip, port, message: error.message });
  });
  server.listen({ host: ip, port, exclusive: true }, () => {
    served.listening.add(key);
    emit({ event: 'listening', pod: served.name, ip, port, at: Date.now() });
    if (served.listening.size >= served.wantedPorts) served.onAllListening?.();
  });
}

function close(served: Served): void {
  if (served.gone) return;
  served.gone = true;
  for (const server of served.servers.values()) {
    server.close();
    server.closeAllConnections();
  }
  served.servers.clear();
  served.listening.clear();
  emit({ event: 'gone', pod: served.name, requests: served.requests, lastRequestAt: served.lastRequestAt, at: Date.now() });
}

/** Marks the pod Ready (status subresource), retrying briefly: it listens on every port now. */
async function setReady(api: CoreV1Api, namespace: string, served: Served): Promise<void> {
  const now = new Date().toISOString();
  const status = { conditions: ['Ready', 'ContainersReady'].map((type) => ({ type, status: 'True', lastTransitionTime: now })) };
  for (let attempt = 0; attempt < 5 && !served.gone; attempt++) {
    try {
      await api.patchNamespacedPodStatus(
        { name: served.name, namespace, body: { status } },
        setHeaderOptions('Content-Type', PatchStrategy.StrategicMergePatch),
      );
      return;
    } catch (error) {
      emit({ event: 'error', pod: served.name, at: Date.now(), message: `setting Ready: ${String(error)}` });
      await new Promise((resolve) => setTimeout(resolve, 200));
    }
  }
}

function isReady(pod: V1Pod): boolean {
  return pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
}

export async function servePods(kubeconfigPath: string, namespace: string): Promise<() => void> {
  const kc = new KubeConfig();
  kc.loadFromFile(kubeconfigPath);
  const api = kc.makeApiClient(CoreV1Api);
  const byUid = new Map<string, Served>();
  const informer = makeInformer(kc, `/api/v1/namespaces/${namespace}/pods`, () => api.listNamespacedPod({ namespace }));

  const follow = (pod: V1Pod): void => {
    const uid = pod.metadata?.uid ?? '';
    const name = pod.metadata?.name ?? '';
    if (uid === '') return;
    let served = byUid.get(uid);
    if (served === undefined) {
      served = {
        name, servers: new Map(), listening: new Set(), onAllListening: undefined, readyRequested: false, wantedPorts: 0,
        requests: 0, lastRequestAt: 0, ready: false, terminating: false, gone: false,
      };
      byUid.set(uid, served);
    }
    const now = Date.now();
    const ready = isReady(pod);
    if (ready && !served.ready) emit({ event: 'ready', pod: name, at: now });
    served.ready = ready;
    if (pod.metadata?.deletionTimestamp !== undefined && !served.terminating) {
      served.terminating = true;
      emit({ event: 'terminating', pod: name, at: now });
    }
    const ip = pod.status?.podIP;
    if (pod.status?.phase !== 'Running' || ip === undefined || ip === '') return;
    const ports = (pod.spec?.containers ?? []).flatMap((c) => (c.ports ?? []).map((p) => p.containerPort));
    served.wantedPorts = ports.length;
    const external = pod.metadata?.annotations?.[EXTERNAL_READINESS_ANNOTATION] === 'external';
    if (external && !ready && !served.terminating && !served.readyRequested) {
      const target = served;
      target.onAllListening = () => {
        target.onAllListening = undefined;
        target.readyRequested = true;
        void setReady(api, namespace, target);
      };
      if (ports.length > 0 && target.listening.size >= ports.length) target.onAllListening();
    }
    for (const port of ports) listen(served, ip, port);
  };
  const forget = (pod: V1Pod): void => {
    const served = byUid.get(pod.metadata?.uid ?? '');
    if (served === undefined) return;
    close(served);
    byUid.delete(pod.metadata?.uid ?? '');
  };

  informer.on('add', follow);
  informer.on('update', follow);
  informer.on('delete', forget);
  informer.on('error', (error: unknown) => {
    emit({ event: 'error', pod: '', at: Date.now(), message: String(error) });
    // Restart the list+watch; a relist reports pods deleted meanwhile as deletes.
    setTimeout(() => void informer.start(), 500);
  });
  await informer.start();
  emit({ event: 'started', pod: '', at: Date.now() });
  return () => {
    void informer.stop();
    for (const served of byUid.values()) close(served);
  };
}

if (import.meta.main) {
  const [kubeconfigPath, namespace] = process.argv.slice(2);
  if (kubeconfigPath === undefined || namespace === undefined) {
    console.error('usage: pod-servers.ts KUBECONFIG NAMESPACE');
    process.exit(2);
  }
  const stop = await servePods(kubeconfigPath, namespace);
  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    process.once(signal, () => {
      stop();
      process.exit(0);
    });
  }
}
