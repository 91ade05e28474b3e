// The 200/s driver's requests, kept light so that the moment the bench notes an acknowledgement
// (t0) is the moment it arrived: client-node's typed API serialises and deserialises every pod
// through its ObjectSerializer (milliseconds per call at 200 calls/s, on the same event loop that
// stamps the acknowledgements). Here: the KubeConfig's credentials and shared connection, a JSON
// body, and only the answer's metadata read back.
import { HttpMethod, RequestContext, type KubeConfig, type V1Pod } from '@kubernetes/client-node';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { preciseNow } from '../src/clock.ts';

type Dispatcher = NonNullable<ReturnType<RequestContext['getDispatcher']>>;

export interface Ack {
  /** Epoch ms at which the response arrived. */
  readonly at: number;
  readonly resourceVersion: string;
  /** The object as the API server returned it. */
  readonly pod: V1Pod;
}

export class PodDriver {
  readonly #kc: KubeConfig;
  readonly #server: string;
  #auth: { headers: Record<string, string>; dispatcher: Dispatcher | undefined } | undefined;

  constructor(kc: KubeConfig) {
    this.#kc = kc;
    const cluster = kc.getCurrentCluster();
    if (cluster === null) throw new Error('No currently active cluster');
    this.#server = cluster.server.replace(/\/+$/, '');
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
    // The credentials are the same for every call: resolved once (client-node re-reads the
    // certificate files on every request).
    this.#auth ??= await this.#authenticate();
    const { headers, dispatcher } = this.#auth;
    const requestHeaders = { ...headers, Accept: 'application/json', ...(text === undefined ? {} : { 'Content-Type': 'application/json' }) };
    let status: number;
    let answer: string;
    if (dispatcher === undefined) {
      const res = await fetch(this.#server + path, { method, headers: requestHeaders, ...(text === undefined ? {} : { body: text }) });
      status = res.status;
      answer = await res.text();
    } else {
      const url = new URL(this.#server + path);
      const res = await dispatcher.request({ origin: url.origin, path: url.pathname, method, headers: requestHeaders, ...(text === undefined ? {} : { body: text }) });
      status = res.statusCode;
      answer = await res.body.text();
    }
    const at = preciseNow();
    if (status < 200 || status > 299) throw new Error(`${method} ${path}: HTTP ${status}: ${answer.slice(0, 200)}`);
    const pod = JSON.parse(answer) as V1Pod;
    return { at, resourceVersion: pod.metadata?.resourceVersion ?? '', pod };
  }

  async #authenticate(): Promise<{ headers: Record<string, string>; dispatcher: Dispatcher | undefined }> {
    const ctx = new RequestContext(`${this.#server}/api/v1/pods`, HttpMethod.GET);
    await this.#kc.applySecurityAuthentication(ctx);
    return { headers: { ...ctx.getHeaders() }, dispatcher: ctx.getDispatcher() };
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
