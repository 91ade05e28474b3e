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
import { performance } from 'node:perf_hooks';
import { CoreV1Api, type V1Pod } from '@kubernetes/client-node';
import { startCluster } from '../test/cluster/cluster.ts';
import { sharedConnectionKubeConfig } from '../src/source/kube-access-client-node.ts';
import { setReady } from './bench.ts';
import { PAGE, runChild, type ChildResult, type IntakeMethod, type Sample } from './intake-child.ts';

const NAMESPACE = 'intake';
const nodeFlags = (process.env['INTAKE_NODE_FLAGS'] ?? '').split(' ').filter((f) => f !== '');

function measure(mode: 'watch' | 'list', method: IntakeMethod, kubeconfig: string, rv: string, events: number, reps: number): Promise<ChildResult> {
  return runChild({ mode, method, kubeconfig, namespace: NAMESPACE, rv, events, reps }, nodeFlags);
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

    const methods = (process.env['INTAKE_METHODS'] ?? 'kube-http,kube-http-protobuf').split(',').filter((m) => m !== '') as IntakeMethod[];
    const lines: string[] = [`${events} watch events from one resourceVersion, ${reps} reps each (first rep cold):`];
    // Rounds alternate the methods, so that load from elsewhere on the machine hits both alike.
    for (let round = 0; round < rounds; round++) {
      for (const method of methods) {
        const r = await measure('watch', method, cluster.kubeconfigPath, rv, events, reps);
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
        const r = await measure('list', method, cluster.kubeconfigPath, rv, events, reps);
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

await main();
