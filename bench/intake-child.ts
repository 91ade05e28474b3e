// The measuring child of the pod intake figures (bench/intake.ts, and the bench's relist): a fresh
// Node process that watches or lists pods with one client method and reports its wall time, CPU
// and memory. A process of its own per measurement, so that one method's heap, JIT state and
// connections never colour another's, and its peak RSS is its own.
//
// Methods: kube-http (src/source/kube-http.ts asking for JSON, as --kube-content-type json),
// kube-http-protobuf (the same transport asking for protobuf, decoding only what the mapping
// reads, as --kube-content-type protobuf) and client-node (its Watch and CoreV1Api).
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { CoreV1Api, Watch, type V1Pod } from '@kubernetes/client-node';
import { sharedConnectionKubeConfig } from '../src/source/kube-access-client-node.ts';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import { listPage, protobufDecoderOf, watchStream, type KubeContentType } from '../src/source/kube-http.ts';
import { toSlimPod } from '../src/source/slim.ts';
import type { SlimPod } from '../src/types.ts';
import { runJsonChild } from './json-child.ts';

export type IntakeMethod = 'kube-http' | 'kube-http-protobuf' | 'client-node';

/** The project's own transport in a content type (what the controller runs with --kube-content-type). */
export function methodOf(contentType: KubeContentType): IntakeMethod {
  return contentType === 'protobuf' ? 'kube-http-protobuf' : 'kube-http';
}

/** The controller's list page size (the reflector's pageSize). */
export const PAGE = 500;

export interface ChildRequest {
  readonly mode: 'watch' | 'list';
  readonly method: IntakeMethod;
  readonly kubeconfig: string;
  /** Namespace whose pods are watched or listed. */
  readonly namespace: string;
  /** watch: from this resourceVersion. */
  readonly rv: string;
  /** watch: events to wait for. */
  readonly events: number;
  readonly reps: number;
}

export interface Sample {
  ms: number;
  cpuMs: number;
}

export interface ChildResult {
  samples: Sample[];
  /** The child's peak RSS (getrusage ru_maxrss) over its whole life. */
  maxRssMb: number;
  /** RSS after the imports, before the first rep: the process's own baseline. */
  rssBeforeMb: number;
  heapUsedMb: number;
  gcMs: number;
  items?: number;
}

async function child(req: ChildRequest): Promise<ChildResult> {
  const { mode, method, kubeconfig, namespace, rv, events, reps } = req;
  // client-node for its own method; kube-http's methods go the controller's way (the direct path).
  const kc = await sharedConnectionKubeConfig();
  kc.loadFromFile(kubeconfig);
  const kube = await kubeAccessFromFile(kubeconfig);
  let gcMs = 0;
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) gcMs += e.duration;
  }).observe({ entryTypes: ['gc'] });
  const samples: Sample[] = [];
  let items = 0;
  const path = `/api/v1/namespaces/${namespace}/pods`;
  const decoder = method === 'kube-http-protobuf' ? protobufDecoderOf({ apiPath: '/api/v1', resource: 'pods' }) : undefined;
  const rssBeforeMb = process.memoryUsage.rss() / 2 ** 20;
  for (let rep = 0; rep < reps; rep++) {
    const t0 = performance.now();
    const c0 = process.cpuUsage();
    if (mode === 'watch') {
      await new Promise<void>((resolve, reject) => {
        let n = 0;
        let abort: (() => void) | undefined;
        let finished = false;
        const onEvent = (type: string, object: unknown): void => {
          if (type === 'BOOKMARK' || finished) return;
          // Slimmed as the pod source does, so both content types pay for the mapping.
          toSlimPod(object as V1Pod);
          if (++n === events) {
            finished = true;
            resolve();
            abort?.();
          }
        };
        const onDone = (err: unknown): void => {
          if (!finished) reject(new Error(`watch ended after ${n} events: ${String(err)}`));
          finished = true;
        };
        const opened =
          method === 'client-node'
            ? (() => {
                const w = new Watch(kc);
                return w.watch(path, { resourceVersion: rv, allowWatchBookmarks: true, timeoutSeconds: 60 }, onEvent, onDone).then((c) => ({ abort: () => c.abort() }));
              })()
            : watchStream(kube, path, { resourceVersion: rv, timeoutSeconds: 60, inactivityMs: 30_000, decoder }, onEvent, onDone);
        opened.then((h) => {
          abort = () => h.abort();
          if (finished) h.abort();
        }, reject);
      });
    } else {
      const cache = new Map<string, SlimPod>();
      let continueToken: string | undefined;
      const core = kc.makeApiClient(CoreV1Api);
      do {
        let page: { items: readonly unknown[]; continueToken: string | undefined };
        if (method === 'client-node') {
          const list = await core.listNamespacedPod({ namespace, limit: PAGE, ...(continueToken === undefined ? {} : { _continue: continueToken }) });
          page = { items: list.items, continueToken: list.metadata?._continue || undefined };
        } else {
          page = await listPage(kube, path, { limit: PAGE, continueToken, decoder });
        }
        for (const item of page.items) {
          const slim = toSlimPod(item as V1Pod);
          if (slim !== undefined) cache.set(slim.uid, slim);
        }
        continueToken = page.continueToken;
      } while (continueToken !== undefined);
      items = cache.size;
    }
    const c1 = process.cpuUsage(c0);
    samples.push({ ms: performance.now() - t0, cpuMs: (c1.user + c1.system) / 1000 });
  }
  (globalThis as { gc?: () => void }).gc?.();
  return {
    samples,
    maxRssMb: process.resourceUsage().maxRSS / 1024,
    rssBeforeMb,
    heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20,
    gcMs,
    items,
  };
}

/** Runs one measurement in a fresh Node process (with --expose-gc and `nodeFlags`). */
export function runChild(req: ChildRequest, nodeFlags: readonly string[] = []): Promise<ChildResult> {
  return runJsonChild<ChildResult>(import.meta.filename, ['child', JSON.stringify(req)], `child ${req.mode} ${req.method}`, nodeFlags);
}

if (process.argv[1] === import.meta.filename && process.argv[2] === 'child') {
  const r = await child(JSON.parse(process.argv[3] ?? '{}') as ChildRequest);
  process.stdout.write(JSON.stringify(r));
  process.exit(0);
}
