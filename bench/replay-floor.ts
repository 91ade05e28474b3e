// The intake floor of a burst: how fast an idle client on the controller's own transport
// (src/source/kube-http.ts, in one content type) receives the burst's watch events.
import type { V1Pod } from '@kubernetes/client-node';
import type { Agent } from 'node:http';
import type { Duplex } from 'node:stream';
import type { KubeAccess, KubeRequestAccess } from '../src/source/kube-access.ts';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import { protobufDecoderOf, watchStream, type KubeContentType } from '../src/source/kube-http.ts';
import { toSlimPod } from '../src/source/slim.ts';

/**
 * The controller's transport, with the bytes its connections received counted (after TLS: the
 * HTTP responses, headers and chunk framing included; the body is all but a few hundred bytes).
 */
class CountingAccess implements KubeAccess {
  bytes = 0;
  readonly #inner: KubeAccess;
  readonly #counted = new WeakSet<Agent>();
  constructor(inner: KubeAccess) {
    this.#inner = inner;
  }
  get server(): string {
    return this.#inner.server;
  }
  async request(url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const made = await this.#inner.request(url, opts);
    this.#count(made.agent);
    return made;
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
  /** Counts what each connection the agent makes from now on receives (Agent.createConnection). */
  #count(agent: Agent): void {
    if (this.#counted.has(agent)) return;
    this.#counted.add(agent);
    const create = (agent as unknown as { createConnection: (...args: unknown[]) => Duplex }).createConnection.bind(agent);
    Object.assign(agent, {
      createConnection: (...args: unknown[]): Duplex => {
        const socket = create(...args);
        socket.on('data', (chunk: Buffer) => { this.bytes += chunk.length; });
        return socket;
      },
    });
  }
}

export interface ReplayFloor {
  /** Events of pods named `prefix*`. */
  readonly events: number;
  /** Bytes the watch's connection received (its content type's wire size, with HTTP framing), up to its end. */
  readonly bytes: number;
  /** From the first such event to the last (opening the watch is not the intake's cost). */
  readonly seconds: number;
}

/**
 * A fresh watch of `namespace`'s pods from `resourceVersion` on the project's transport, asking
 * for `contentType` as the controller does (protobuf: the pods' partial decoder), that only
 * decodes and slims each event (as the pod source's mapping does; no cache, no etcd), timed until
 * the last event of a pod named `prefix*`; ends after 1 s without one. Zeros when the watch
 * failed (e.g. 410: the API server no longer holds the events).
 */
export async function replayFloor(kubeconfig: string, namespace: string, resourceVersion: string, prefix: string, contentType: KubeContentType): Promise<ReplayFloor> {
  const kube = new CountingAccess(await kubeAccessFromFile(kubeconfig));
  const decoder = contentType === 'protobuf' ? protobufDecoderOf({ apiPath: '/api/v1', resource: 'pods' }) : undefined;
  const opened = performance.now();
  let firstAt: number | undefined;
  let events = 0;
  let lastAt = opened;
  let failed = false;
  let handle: { abort(): void } | undefined;
  let stopped = false;
  await new Promise<void>((resolve) => {
    const quiet = setInterval(() => {
      if (failed || performance.now() - lastAt > 1000) {
        clearInterval(quiet);
        resolve();
      }
    }, 50);
    const onEvent = (type: string, object: unknown): void => {
      if (type === 'ERROR') { failed = true; return; }
      if (type === 'BOOKMARK') return;
      const pod = object as V1Pod;
      if (!(pod.metadata?.name ?? '').startsWith(prefix)) return;
      toSlimPod(pod);
      events++;
      lastAt = performance.now();
      firstAt ??= lastAt;
    };
    watchStream(kube, `/api/v1/namespaces/${namespace}/pods`, { resourceVersion, timeoutSeconds: 120, inactivityMs: 30_000, decoder }, onEvent, (err) => {
      // null: the server ended the watch (timeoutSeconds); after our abort() nothing counts.
      if (err !== null && !stopped) failed = true;
    }).then((h) => { handle = h; }, () => { failed = true; });
  });
  stopped = true;
  handle?.abort();
  await kube.close();
  return failed || firstAt === undefined ? { events: 0, bytes: 0, seconds: 0 } : { events, bytes: kube.bytes, seconds: (lastAt - firstAt) / 1000 };
}
