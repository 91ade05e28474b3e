// Memory probe (a profiling aid, not part of `npm run bench`): the controller's memory at rest
// with N registered pods and PROBE_FOREIGN_KEYS foreign keys (default 50,000), under several
// Node flags / environments, one controller after the other against the same cluster. Prints
// one line per variant: RSS and heap 15 s after ready, and the CPU of the PROBE_CPU_WINDOW_S
// seconds (default 30) after that.
//   node bench/memory-probe.ts [PODS] [VARIANT ...]   VARIANT: "NODE_FLAGS|ENV=VALUE,...[|ENTRY]"
// ENTRY (or PROBE_ENTRY for every variant): the script to run instead of the built bin, e.g. an
// older build to compare with, variant by variant on the same cluster (the image's bundle:
// `node -e "import('./scripts/bundle.ts').then((m) => m.bundle('/tmp/b'))"`, then /tmp/b/bin/etcd-registrar.mjs).
// Default variants: the shipped tuning (--max-semi-space-size=4, as the image and the bin's
// shebang pass it), Node's defaults, and ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true.
import { readdirSync, readFileSync } from 'node:fs';
import { CoreV1Api, type KubeConfig } from '@kubernetes/client-node';
import { Etcd3 } from 'etcd3';
import { sharedConnectionKubeConfig } from '../src/source/kube-access-client-node.ts';
import { startCluster } from '../test/cluster/cluster.ts';
import { startController } from '../test/e2e/support.ts';
import { createReadyPods, GRANTS_ANNOTATION, procCpuSeconds, REC_NAMESPACE, rssMb, writeForeignKeys } from './bench.ts';
import { metricSum } from './stats.ts';

const pods = Number(process.argv[2] ?? '10000');
const variants = process.argv.slice(3);
if (variants.length === 0) variants.push('--max-semi-space-size=4|', '|', '--max-semi-space-size=4|ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true');
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/** CPU ticks (user + system, 1/100 s) per thread name (the main thread is "node"; V8's are "V8 DefaultWorke"). */
function threadCpuTicks(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const stat = readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
      const name = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      out.set(name, (out.get(name) ?? 0) + Number(fields[11]) + Number(fields[12]));
    } catch {
      // The thread ended meanwhile.
    }
  }
  return out;
}

/**
 * Where the anonymous resident memory is, from /proc/PID/smaps: the malloc heap, and the other
 * anonymous mappings grouped by size (V8's pages are 256 KiB; glibc's thread arenas 64 MiB).
 */
function anonymousMappings(pid: number): string {
  const groups = new Map<string, { count: number; rssKb: number }>();
  let current = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^([0-9a-f]+)-([0-9a-f]+) \S+ \S+ \S+ (\d+)\s*(.*)$/.exec(line);
    if (head !== null) {
      const sizeKb = (parseInt(head[2]!, 16) - parseInt(head[1]!, 16)) / 1024;
      const name = head[4] ?? '';
      current = name.startsWith('/') ? '' : name !== '' ? name : sizeKb >= 65536 ? 'anon >= 64 MiB' : sizeKb >= 1024 ? 'anon 1-64 MiB' : 'anon < 1 MiB';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss === null || current === '') continue;
    const g = groups.get(current) ?? { count: 0, rssKb: 0 };
    g.count++;
    g.rssKb += Number(rss[1]);
    groups.set(current, g);
  }
  return [...groups].sort((a, b) => b[1].rssKb - a[1].rssKb).map(([name, g]) => `${name} ${(g.rssKb / 1024).toFixed(1)} MB in ${g.count}`).join('; ');
}

/** The file-backed resident memory from /proc/PID/smaps, by file and permissions (the node binary's code and read-only data are most of it). */
function fileMappings(pid: number): string {
  const groups = new Map<string, number>();
  let current = '';
  for (const line of readFileSync(`/proc/${pid}/smaps`, 'utf8').split('\n')) {
    const head = /^[0-9a-f]+-[0-9a-f]+ (\S+) \S+ \S+ \d+\s*(.*)$/.exec(line);
    if (head !== null) {
      current = head[2]?.startsWith('/') === true ? `${head[2].split('/').at(-1)} ${head[1]}` : '';
      continue;
    }
    const rss = /^Rss:\s+(\d+) kB/.exec(line);
    if (rss === null || current === '') continue;
    groups.set(current, (groups.get(current) ?? 0) + Number(rss[1]));
  }
  return [...groups].filter(([, kb]) => kb >= 256).sort((a, b) => b[1] - a[1]).map(([name, kb]) => `${name} ${(kb / 1024).toFixed(1)} MB`).join('; ');
}

const cluster = await startCluster({ nodes: 3 });
try {
  await cluster.createNamespace(REC_NAMESPACE);
  await cluster.kubectl(['annotate', 'namespace', REC_NAMESPACE, `${GRANTS_ANNOTATION}=rec`]);
  const kc: KubeConfig = await sharedConnectionKubeConfig();
  kc.loadFromFile(cluster.kubeconfigPath);
  const etcd = new Etcd3({ hosts: [...cluster.registry.endpoints] });
  // Foreign keys under the root (another writer's): the first full read covers them too.
  await writeForeignKeys(etcd, Number(process.env['PROBE_FOREIGN_KEYS'] ?? '50000'));
  const failures = await createReadyPods(kc.makeApiClient(CoreV1Api), 0, pods);
  console.error(`created ${pods} Ready pods (${failures} failures)`);
  for (const variant of variants) {
    const [flags = '', env = '', entry = process.env['PROBE_ENTRY'] ?? ''] = variant.split('|');
    const saved = { ...process.env };
    for (const pair of env.split(',').filter((p) => p !== '')) {
      const [k = '', v = ''] = pair.split('=');
      process.env[k] = v;
    }
    const spawned = Date.now();
    const controller = await startController({
      kubeconfig: cluster.kubeconfigPath,
      etcdEndpoints: cluster.registry.endpoints,
      nodeOptions: flags.split(' ').filter((f) => f !== ''),
      ...(entry === '' ? {} : { entry }),
      extraArgs: ['--environment', 'PRE', '--owner-id', 'bench-rec', '--namespaces', REC_NAMESPACE],
    });
    process.env = saved;
    console.error(`${variant}: controller pid ${controller.proc.pid}`);
    await controller.waitReady(120_000);
    // Where a start's time goes: each log line's offset from the spawn (a restart when an
    // earlier variant registered the pods: it adopts them).
    const startLog = controller.lines().slice(0, 25).map((line) => `+${((Date.parse(String(line['time'])) - spawned) / 1000).toFixed(2)}s ${String(line['msg'])}`);
    console.error(`${variant}: ready ${((Date.now() - spawned) / 1000).toFixed(2)} s after the spawn; ${startLog.join('; ')}`);
    // Ready comes after the first reconcile; the workers write the keys after that.
    await sleep(15_000);
    // CPU at rest: a window after the keys are written, with no pod changing.
    const cpuWindowS = Number(process.env['PROBE_CPU_WINDOW_S'] ?? '30');
    const cpuBefore = procCpuSeconds(controller.proc.pid!);
    const threadsBefore = threadCpuTicks(controller.proc.pid!);
    // RSS and V8's heap every 5 s of the window: whether memory settles, and when.
    const series: string[] = [];
    for (let t = 0; t < cpuWindowS; t += 5) {
      const text = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
      series.push(`${t}s rss ${rssMb(controller.proc.pid!).toFixed(0)} heap ${((metricSum(text, 'etcd_registrar_nodejs_heap_size_total_bytes') ?? 0) / 1048576).toFixed(0)}`);
      await sleep(Math.min(5, cpuWindowS - t) * 1000);
    }
    console.error(`${variant}: ${series.join(', ')}`);
    console.error(`${variant}: resident anonymous mappings: ${anonymousMappings(controller.proc.pid!)}`);
    console.error(`${variant}: resident file-backed mappings: ${fileMappings(controller.proc.pid!)}`);
    const threadsAfter = threadCpuTicks(controller.proc.pid!);
    const byThread = [...threadsAfter].map(([name, ticks]) => [name, ((ticks - (threadsBefore.get(name) ?? 0)) / 100 / cpuWindowS) * 100] as const).filter(([, pct]) => pct > 0);
    console.error(`${variant}: CPU % of a core by thread over the window: ${byThread.sort((a, b) => b[1] - a[1]).map(([name, pct]) => `${name} ${pct.toFixed(2)}`).join(', ')}`);
    const cpuPercent = ((procCpuSeconds(controller.proc.pid!) - cpuBefore) / cpuWindowS) * 100;
    const keys = await etcd.getAll().prefix('/rec_PRE/').count();
    const metrics = await (await fetch(`${controller.metricsUrl}/metrics`)).text();
    const status = readFileSync(`/proc/${controller.proc.pid}/status`, 'utf8');
    const field = (name: string): number => Number(new RegExp(`^${name}:\\s+(\\d+)`, 'm').exec(status)?.[1] ?? 0) / 1024;
    const mb = (name: string): string => ((metricSum(metrics, name) ?? 0) / 1048576).toFixed(1);
    console.log(JSON.stringify({
      variant, keys, cpu_percent: cpuPercent.toFixed(2), cpu_window_s: cpuWindowS,
      rss_mb: field('VmRSS').toFixed(1), hwm_mb: field('VmHWM').toFixed(1), anon_mb: field('RssAnon').toFixed(1), file_mb: field('RssFile').toFixed(1),
      heap_total_mb: mb('etcd_registrar_nodejs_heap_size_total_bytes'), heap_used_mb: mb('etcd_registrar_nodejs_heap_size_used_bytes'),
      external_mb: mb('etcd_registrar_nodejs_external_memory_bytes'), threads: field('Threads') * 1024,
    }));
    await controller.stop();
  }
  etcd.close();
} finally {
  await cluster.stop();
}
