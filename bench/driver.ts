// The 200/s driver's requests, kept light so that the moment the bench notes an acknowledgement
// (t0) is the moment it arrived: client-node's typed API serialises and deserialises every pod
// through its ObjectSerializer (milliseconds per call at 200 calls/s, on the same event loop that
// stamps the acknowledgements). Here: the controller's own request path (kube-http.ts, its
// credentials and shared connections) with a JSON body, and the answer parsed once.
import type { V1Pod } from '@kubernetes/client-node';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { preciseNow } from '../src/clock.ts';
import type { KubeAccess } from '../src/source/kube-access.ts';
import { requestText } from '../src/source/kube-http.ts';

export interface Ack {
  /** Epoch ms at which the response arrived. */
  readonly at: number;
  readonly resourceVersion: string;
  /** The object as the API server returned it. */
  readonly pod: V1Pod;
}

export class PodDriver {
  readonly #kube: KubeAccess;

  constructor(kube: KubeAccess) {
    this.#kube = kube;
  }

  /** Creates a pod (plain JSON in, plain JSON back: no typed models anywhere on this path). */
  create(namespace: string, pod: unknown): Promise<Ack> {
    return this.#send('POST', `/api/v1/namespaces/${namespace}/pods`, JSON.stringify(pod));
  }

  /** Replaces a pod's status (as a kubelet's status update does) with a body serialised beforehand. */
  replaceStatus(namespace: string, name: string, body: string): Promise<Ack> {
    return this.#send('PUT', `/api/v1/namespaces/${namespace}/pods/${name}/status`, body);
  }

  replace(namespace: string, name: string, pod: unknown): Promise<Ack> {
    return this.#send('PUT', `/api/v1/namespaces/${namespace}/pods/${name}`, JSON.stringify(pod));
  }

  get(namespace: string, name: string): Promise<Ack> {
    return this.#send('GET', `/api/v1/namespaces/${namespace}/pods/${name}`, undefined);
  }

  delete(namespace: string, name: string): Promise<Ack> {
    return this.#send('DELETE', `/api/v1/namespaces/${namespace}/pods/${name}`, undefined);
  }

  async #send(method: 'GET' | 'POST' | 'PUT' | 'DELETE', path: string, text: string | undefined): Promise<Ack> {
    const answer = await requestText(this.#kube, method, path, text);
    const at = preciseNow();
    if (answer.status < 200 || answer.status > 299) throw new Error(`${method} ${path}: HTTP ${answer.status}: ${answer.text.slice(0, 200)}`);
    const pod = JSON.parse(answer.text) as V1Pod;
    return { at, resourceVersion: pod.metadata?.resourceVersion ?? '', pod };
  }
}

/** The bench process's own event-loop delay over a run: how late its timestamps can be. */
export class DriverDelay {
  readonly #histogram: ReturnType<typeof monitorEventLoopDelay> = monitorEventLoopDelay({ resolution: 5 });

  constructor() {
    this.#histogram.enable();
  }

  stop(): { readonly p99_ms: number; readonly max_ms: number } {
    this.#histogram.disable();
    const ms = (ns: number): number => Math.round(ns / 1e5) / 10;
    return { p99_ms: ms(this.#histogram.percentile(99)), max_ms: ms(this.#histogram.max) };
  }
}
