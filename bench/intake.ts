// Pod intake micro-benchmark (issues 6 and 15): how fast can a client receive the burst's watch
// events, and what does a full pod list cost, with src/source/kube-http.ts as JSON and as protobuf
// (and client-node's Watch/CoreV1Api, and curl: the API server's own pace).
//
//   node bench/intake.ts    [INTAKE_PODS=10000 INTAKE_EVENTS=1000 INTAKE_REPS=5 INTAKE_ROUNDS=3]
//   INTAKE_METHODS=kube-http,kube-http-protobuf (default; client-node is the third method)
//   INTAKE_CURL=1 also times curl (watch lines, one-page lists, gzip).
//   INTAKE_PAGE_FILE=F saves one protobuf list page of 500 pods to F (input for profiling the decoder).
//   INTAKE_NODE_FLAGS='--cpu-prof --cpu-prof-dir=/tmp/prof' adds Node flags to the measuring children.
//
// Starts a real cluster (test/cluster), creates INTAKE_PODS pods no scheduler takes
// (schedulerName bench-none), sets all but the last INTAKE_EVENTS Ready, notes the resourceVersion,
// sets the last INTAKE_EVENTS Ready (one MODIFIED event each, ~4.4 kB like the bench burst), then
// times, each method in a fresh child process, INTAKE_REPS watches from that resourceVersion
// until INTAKE_EVENTS events arrived, and INTAKE_REPS full lists (pages of 500, slimmed like the
// pod source does).
import { execFile, spawn } from 'node:child_process';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import { CoreV1Api, Watch, type V1Pod } from '@kubernetes/client-node';
import { startCluster } from '../test/cluster/cluster.ts';
import { sharedConnectionKubeConfig } from '../src/source/kube-access-client-node.ts';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import { listPage, protobufDecoderOf, watchStream } from '../src/source/kube-http.ts';
import { toSlimPod } from '../src/source/slim.ts';
import type { SlimPod } from '../src/types.ts';
import { setReady } from './bench.ts';

const NAMESPACE = 'intake';
const PAGE = 500;

interface Sample {
  ms: number;
  cpuMs: number;
}

interface ChildResult {
  samples: Sample[];
  maxRssMb: number;
  heapUsedMb: number;
  gcMs: number;
  items?: number;
}

async function child(mode: string, method: string, kubeconfig: string, rv: string, events: number, reps: number): Promise<ChildResult> {
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
  const path = `/api/v1/namespaces/${NAMESPACE}/pods`;
  // kube-http-protobuf: the same transport asking for protobuf, decoding only what the mapping reads.
  const decoder = method === 'kube-http-protobuf' ? protobufDecoderOf({ apiPath: '/api/v1', resource: 'pods' }) : undefined;
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
          const list = await core.listNamespacedPod({ namespace: NAMESPACE, limit: PAGE, ...(continueToken === undefined ? {} : { _continue: continueToken }) });
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
    heapUsedMb: process.memoryUsage().heapUsed / 2 ** 20,
    gcMs,
    items,
  };
}

function runChild(args: string[]): Promise<ChildResult> {
  return new Promise((resolve, reject) => {
    const proc = spawn(process.execPath, ['--expose-gc', ...(process.env['INTAKE_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== ''), import.meta.filename, 'child', ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    proc.stdout.on('data', (d: Buffer) => (out += d.toString()));
    proc.on('exit', (code) => (code === 0 ? resolve(JSON.parse(out) as ChildResult) : reject(new Error(`child ${args.join(' ')} exited ${String(code)}`))));
  });
}

function sh(cmd: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    execFile('sh', ['-c', cmd], { maxBuffer: 1 << 20 }, (err) => (err ? reject(err) : resolve(performance.now() - t0)));
  });
}

/** Runs curl on a watch URL until `events` lines arrived, then ends it (the watch stays open). */
function curlEvents(args: string[], url: string, events: number): Promise<{ ms: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const proc = spawn('curl', [...args, url], { stdio: ['ignore', 'pipe', 'inherit'] });
    let lines = 0;
    let bytes = 0;
    let done = false;
    proc.stdout.on('data', (d: Buffer) => {
      if (done) return;
      for (let i = d.indexOf(10); i !== -1; i = d.indexOf(10, i + 1)) {
        if (++lines === events) {
          done = true;
          bytes += i + 1;
          resolve({ ms: performance.now() - t0, bytes });
          proc.kill();
          return;
        }
      }
      bytes += d.length;
    });
    proc.on('exit', () => {
      if (!done) reject(new Error(`curl ended after ${lines} lines`));
    });
  });
}

function summary(name: string, r: { samples: Sample[] }, extra = ''): string {
  const ms = r.samples.map((s) => s.ms.toFixed(0)).join(' ');
  const cpu = r.samples.map((s) => s.cpuMs.toFixed(0)).join(' ');
  const warm = r.samples.slice(1);
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)] ?? NaN;
  return `${name.padEnd(28)} wall ms [${ms}] cpu ms [${cpu}] warm median ${med(warm.map((s) => s.ms)).toFixed(0)} ms / ${med(warm.map((s) => s.cpuMs)).toFixed(0)} ms cpu ${extra}`;
}


async function parallel(count: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    for (let i = next++; i < count; i = next++) await fn(i);
  }));
}

async function main(): Promise<void> {
  const pods = Number(process.env['INTAKE_PODS'] ?? 10_000);
  const events = Number(process.env['INTAKE_EVENTS'] ?? 1000);
  const reps = Number(process.env['INTAKE_REPS'] ?? 5);
  const rounds = Number(process.env['INTAKE_ROUNDS'] ?? 3);
  const cluster = await startCluster({ nodes: 1 });
  try {
    const kc = await sharedConnectionKubeConfig();
    kc.loadFromFile(cluster.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    await cluster.createNamespace(NAMESPACE);
    const created: V1Pod[] = [];
    const t = performance.now();
    await parallel(pods, async (i) => {
      created[i] = await core.createNamespacedPod({
        namespace: NAMESPACE,
        body: {
          metadata: { name: `p-${i}`, labels: { app: 'intake' }, annotations: { 'etcd-registrar.io/register': 'true', 'etcd-registrar.io/service': 'bench', 'etcd-registrar.io/port': '86' } },
          spec: { schedulerName: 'bench-none', terminationGracePeriodSeconds: 30, containers: [{ name: 'app', image: 'bench:1', ports: [{ containerPort: 86 }] }] },
        },
      });
    });
    const ip = (i: number): string => `10.249.${(i >> 8) & 255}.${i & 255}`;
    await parallel(pods - events, async (i) => { await setReady(core, created[i], ip(i), NAMESPACE); });
    const rv = (await core.listNamespacedPod({ namespace: NAMESPACE, limit: 1 })).metadata?.resourceVersion ?? '';
    await parallel(events, async (i) => { await setReady(core, created[pods - events + i], ip(pods - events + i), NAMESPACE); });
    console.error(`setup: ${pods} pods, ${events} Ready from rv ${rv} in ${((performance.now() - t) / 1000).toFixed(1)} s`);

    const methods = (process.env['INTAKE_METHODS'] ?? 'kube-http,kube-http-protobuf').split(',').filter((m) => m !== '');
    const lines: string[] = [`${events} watch events from one resourceVersion, ${reps} reps each (first rep cold):`];
    // Rounds alternate the methods, so that load from elsewhere on the machine hits both alike.
    for (let round = 0; round < rounds; round++) {
      for (const method of methods) {
        const r = await runChild(['watch', method, cluster.kubeconfigPath, rv, String(events), String(reps)]);
        lines.push(summary(`watch ${method}`, r, `rss ${r.maxRssMb.toFixed(0)} MB`));
      }
    }
    const user = kc.getCurrentUser();
    const auth = `--cacert ${cluster.caPath} --cert ${user?.certFile ?? ''} --key ${user?.keyFile ?? ''}`;
    const url = `${cluster.apiServerUrl}/api/v1/namespaces/${NAMESPACE}/pods`;
    const pageFile = process.env['INTAKE_PAGE_FILE'];
    if (pageFile !== undefined && pageFile !== '') {
      await sh(`curl -sf ${auth} -H 'Accept: application/vnd.kubernetes.protobuf' '${url}?limit=${PAGE}' > '${pageFile}'`);
      await sh(`curl -sf ${auth} -H 'Accept: application/json' '${url}?limit=${PAGE}' > '${pageFile}.json'`);
    }
    lines.push(`list of ${pods} pods in pages of ${PAGE}, slimmed into a Map, ${reps} reps each:`);
    for (let round = 0; round < rounds; round++) {
      for (const method of methods) {
        const r = await runChild(['list', method, cluster.kubeconfigPath, rv, String(events), String(reps)]);
        lines.push(summary(`list ${method}`, r, `items ${r.items} maxRSS ${r.maxRssMb.toFixed(0)} MB heapUsed after gc ${r.heapUsedMb.toFixed(1)} MB gc ${r.gcMs.toFixed(0)} ms`));
      }
    }
    if (process.env['INTAKE_CURL'] === '1') await curlFloor(lines, { auth, url, rv, events, reps, pods, curlArgs: ['-sN', '--cacert', cluster.caPath, '--cert', user?.certFile ?? '', '--key', user?.keyFile ?? ''] });
    console.log(lines.join('\n'));
  } finally {
    await cluster.stop();
  }
}

/** The API server's own pace, by curl: watch lines, a tiny GET, one-page lists plain and gzip. */
async function curlFloor(lines: string[], o: { auth: string; url: string; rv: string; events: number; reps: number; pods: number; curlArgs: string[] }): Promise<void> {
  const { auth, url, rv, events, reps, pods, curlArgs } = o;
  {
    const curl: Sample[] = [];
    let bytes = 0;
    for (let i = 0; i < reps; i++) {
      const r = await curlEvents(curlArgs, `${url}?watch=true&resourceVersion=${rv}&timeoutSeconds=60`, events);
      curl.push({ ms: r.ms, cpuMs: NaN });
      bytes = r.bytes;
    }
    const small: Sample[] = [];
    for (let i = 0; i < reps; i++) small.push({ ms: await sh(`curl -s ${auth} '${url}?limit=1' > /dev/null`), cpuMs: NaN });
    lines.push(summary('watch curl', { samples: curl }, `(${bytes} bytes)`));
    lines.push(summary('curl one tiny GET (overhead)', { samples: small }));

    const listCurl: Sample[] = [];
    for (let i = 0; i < reps; i++) {
      listCurl.push({ ms: await sh(`curl -s ${auth} '${url}?limit=${pods}' > /dev/null`), cpuMs: NaN });
    }
    lines.push(summary(`list curl (one page)`, { samples: listCurl }));
    const listGzip: Sample[] = [];
    for (let i = 0; i < reps; i++) {
      listGzip.push({ ms: await sh(`curl -s --compressed ${auth} '${url}?limit=${pods}' > /dev/null`), cpuMs: NaN });
    }
    lines.push(summary(`list curl --compressed (gzip)`, { samples: listGzip }));
  }
}

if (process.argv[2] === 'child') {
  const [, , , mode = '', method = '', kubeconfig = '', rv = '', events = '0', reps = '1'] = process.argv;
  const r = await child(mode, method, kubeconfig, rv, Number(events), Number(reps));
  process.stdout.write(JSON.stringify(r));
  process.exit(0);
} else {
  await main();
}
