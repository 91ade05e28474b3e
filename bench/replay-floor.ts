// The intake floor of a burst: how fast an idle client on the controller's own transport
// (src/source/kube-http.ts, in one content type) receives the burst's watch events.
import type { V1Pod } from '@kubernetes/client-node';
import type { Dispatcher } from 'undici';
import type { KubeAccess, KubeRequestAccess } from '../src/source/kube-access.ts';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import { protobufDecoderOf, watchStream, type KubeContentType } from '../src/source/kube-http.ts';
import { toSlimPod } from '../src/source/slim.ts';

type DispatchHandler = Parameters<Dispatcher['dispatch']>[1];

/** The controller's transport, with the response body bytes of its requests counted (the wire size). */
class CountingAccess implements KubeAccess {
  bytes = 0;
  readonly #inner: KubeAccess;
  constructor(inner: KubeAccess) {
    this.#inner = inner;
  }
  get server(): string {
    return this.#inner.server;
  }
  async request(url: URL, opts: { readonly watch: boolean }): Promise<KubeRequestAccess> {
    const made = await this.#inner.request(url, opts);
    const count = (n: number): void => { this.bytes += n; };
    return { ...made, dispatcher: made.dispatcher.compose((dispatch) => (o, handler) => dispatch(o, counting(handler, count))), done: () => made.done() };
  }
  close(): Promise<void> {
    return this.#inner.close();
  }
}

/** The handler, with its body chunks counted (undici's handler API, or the legacy one it still takes). */
function counting(handler: DispatchHandler, count: (n: number) => void): DispatchHandler {
  const modern = typeof handler.onResponseData === 'function';
  return new Proxy(handler, {
    get(target, prop) {
      const value: unknown = Reflect.get(target, prop, target);
      if (typeof value !== 'function') return value;
      const fn = value as (...args: unknown[]) => unknown;
      if (modern && prop === 'onResponseData') return (controller: unknown, chunk: Buffer) => { count(chunk.length); return fn.call(target, controller, chunk); };
      if (!modern && prop === 'onData') return (chunk: Buffer) => { count(chunk.length); return fn.call(target, chunk); };
      return fn.bind(target);
    },
  });
}

export interface ReplayFloor {
  /** Events of pods named `prefix*`. */
  readonly events: number;
  /** Response body bytes of the watch (its content type's wire size), up to its end. */
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
