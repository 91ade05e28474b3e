// The chaos suite's own Kubernetes pod watch (independent of the controller's): feeds a
// PodTimeline with every pod's serving state and the time it was seen. Survives API server
// restarts: a watch that ends resumes from the last resourceVersion; a 410 relists.
import { CoreV1Api, KubeConfig, Watch, type V1Pod } from '@kubernetes/client-node';
import type { PodState, PodTimeline } from './timeline.ts';

export function podState(pod: V1Pod, at: number): PodState {
  const ip = pod.status?.podIP ?? '';
  const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
  const finished = pod.status?.phase === 'Succeeded' || pod.status?.phase === 'Failed';
  return { at, ip, serving: ready && !finished && ip !== '' && pod.metadata?.deletionTimestamp == null };
}

export class PodWatcher {
  readonly #core: CoreV1Api;
  readonly #watch: Watch;
  readonly #namespace: string;
  readonly #timeline: PodTimeline;
  #resourceVersion = '';
  #abort: AbortController | undefined;
  #stopped = false;
  /** Watch (re)connections after the first, for the report. */
  reconnects = 0;

  constructor(kubeconfigPath: string, namespace: string, timeline: PodTimeline) {
    const kc = new KubeConfig();
    kc.loadFromFile(kubeconfigPath);
    this.#core = kc.makeApiClient(CoreV1Api);
    this.#watch = new Watch(kc);
    this.#namespace = namespace;
    this.#timeline = timeline;
  }

  async start(): Promise<void> {
    await this.#list();
    await this.#watchFrom();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
  }

  #record(pod: V1Pod, at: number): void {
    const uid = pod.metadata?.uid;
    if (uid === undefined) return;
    this.#timeline.record(uid, pod.metadata?.name ?? uid, podState(pod, at));
  }

  async #list(): Promise<void> {
    const list = await this.#core.listNamespacedPod({ namespace: this.#namespace });
    const at = Date.now();
    const present = new Set<string>();
    for (const pod of list.items) {
      this.#record(pod, at);
      if (pod.metadata?.uid !== undefined) present.add(pod.metadata.uid);
    }
    for (const uid of this.#timeline.uids()) if (!present.has(uid)) this.#timeline.gone(uid, at);
    this.#resourceVersion = list.metadata?.resourceVersion ?? '';
  }

  async #watchFrom(): Promise<void> {
    let relist = false;
    const onEvent = (phase: string, obj: V1Pod & { code?: number }): void => {
      const at = Date.now();
      if (phase === 'ERROR') {
        relist ||= obj.code === 410;
        return;
      }
      const rv = obj.metadata?.resourceVersion;
      if (rv !== undefined) this.#resourceVersion = rv;
      if (phase === 'BOOKMARK') return;
      if (phase === 'DELETED') {
        if (obj.metadata?.uid !== undefined) this.#timeline.gone(obj.metadata.uid, at);
        return;
      }
      this.#record(obj, at);
    };
    const onDone = (err: unknown): void => {
      if (this.#stopped) return;
      const gone = relist || (typeof err === 'object' && err !== null && 'code' in err && (err as { code: unknown }).code === 410);
      void this.#restart(gone);
    };
    try {
      this.#abort = await this.#watch.watch(`/api/v1/namespaces/${this.#namespace}/pods`, { resourceVersion: this.#resourceVersion, allowWatchBookmarks: true }, onEvent, onDone);
    } catch {
      // The API server is down (restart scenario) or the resourceVersion is too old: relist.
      if (!this.#stopped) void this.#restart(true);
    }
  }

  async #restart(relist: boolean): Promise<void> {
    await new Promise((resolve) => setTimeout(resolve, 200));
    if (this.#stopped) return;
    this.reconnects++;
    try {
      if (relist) await this.#list();
    } catch {
      void this.#restart(true);
      return;
    }
    await this.#watchFrom();
  }
}
