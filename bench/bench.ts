// The etcd-registrar benchmarks (issue 6), against the real local control plane (kube-apiserver,
// KWOK nodes), the real registry etcd and the real built controller process. Observers are
// independent of the controller: a separate Kubernetes pod watch and a separate etcd watch.
import { CoreV1Api, KubeConfig, Watch, type V1Pod, type V1PodStatus } from '@kubernetes/client-node';
import { Etcd3, type Watcher } from 'etcd3';
import { closeSync, fstatSync, openSync, readFileSync, readSync, statSync, writeFileSync } from 'node:fs';
import { sharedConnectionKubeConfig } from '../src/source/kube-access-client-node.ts';
import { kubeAccessFromFile } from '../src/source/kube-access-resolve.ts';
import type { KubeContentType } from '../src/source/kube-http.ts';
import { preciseNow } from '../src/clock.ts';
import { startCluster, type Cluster } from '../test/cluster/cluster.ts';
import { parseJsonLines, startController, type ControllerProcess } from '../test/e2e/support.ts';
import { metricSum, summarize, type LatencySummary } from './stats.ts';
import { decompose, describeBreakdown, floorP99, histogramQuantile, quantiles, type ControllerTiming, type Decomposition, type KeyArrival, type Quantiles, type Transition } from './decompose.ts';
import { cpuBudget, cpuSnapshot, describeCpu, LoadMonitor, type CpuBudget, type LoadReport } from './load.ts';
import { replayFloor } from './replay-floor.ts';
import { methodOf, runChild } from './intake-child.ts';
import { chartMemoryLimitMb, memoryLimit } from './memory-limit.ts';
import { startWatchProbe, type ProbeResult, type WatchProbe } from './watch-probe.ts';
import { DriverDelay, PodDriver } from './driver.ts';
import { machinePace, type MachinePace } from './pace.ts';

export type BenchSize = 'tiny' | 'quick' | 'full';

export interface BenchOptions {
  readonly size: BenchSize;
  /** Overrides the size's reconcile sizes (e.g. 10,000 pods in a --quick run). */
  readonly reconcilePods?: readonly number[] | undefined;
  readonly log?: (line: string) => void;
  /** Records the CPU other processes use during the latency runs (the caller decides what a loaded machine means). */
  readonly load?: LoadMonitor | undefined;
}

/**
 * Who turns the pods Ready in a latency run: `kwok` (scheduler + KWOK, as in a cluster; at
 * most ~55 pods/s on 2 cores) or `bench` (unscheduled pods whose status the bench sets to
 * Ready with a podIP itself, paced; the controller sees the same watch events, and faster
 * rates become possible). Deleting an unscheduled pod removes it at once, so its
 * deregistration is timed from the DELETED event rather than a deletionTimestamp.
 */
export type LatencyDriver = 'kwok' | 'bench';

export interface Profile {
  /** [transitions per second, pods, driver (default kwok)] per registration/deregistration run. */
  readonly latencyRuns: ReadonlyArray<readonly [rate: number, pods: number, driver?: LatencyDriver]>;
  readonly burstPods: number;
  /** The at-rest window; in the full profile a whole --reconcile-interval (60 s), so that it holds one periodic reconcile, not zero or one by chance. */
  readonly steadySeconds: number;
  /** From a restarted controller's ready to its steady window: what it does right after a start (GCs of the start's garbage, the memory reducer) is not "at rest". */
  readonly steadySettleMs: number;
  /** Registered pods at which a full reconcile is measured (ascending); the last size is also the restart's and the steady state's. */
  readonly reconcilePods: readonly number[];
  /** Keys under the same root that belong to nobody (no lease), read by every full reconcile. */
  readonly foreignKeys: number;
  /** Upper bound for waiting on any one phase to settle. */
  readonly settleMs: number;
  /** Raw etcd txns (each a put, then a delete) of the calibration, at the last bench-driven run's rate. */
  readonly calibrationTxns: number;
}

export const PROFILES: Record<BenchSize, Profile> = {
  tiny: { latencyRuns: [[10, 5], [50, 10, 'bench']], burstPods: 20, steadySeconds: 2, steadySettleMs: 3000, reconcilePods: [20], foreignKeys: 500, settleMs: 60_000, calibrationTxns: 25 },
  quick: { latencyRuns: [[50, 500], [200, 1000, 'bench']], burstPods: 1000, steadySeconds: 10, steadySettleMs: 10_000, reconcilePods: [1000], foreignKeys: 50_000, settleMs: 90_000, calibrationTxns: 1000 },
  full: { latencyRuns: [[50, 1000], [200, 2000, 'bench']], burstPods: 5000, steadySeconds: 60, steadySettleMs: 30_000, reconcilePods: [1000, 10_000], foreignKeys: 50_000, settleMs: 300_000, calibrationTxns: 1000 },
};

/** The controller over one latency run, from its /metrics scraped at the start and the end. */
export interface ControllerDuringRun {
  /** Largest and 99th-percentile event-loop delay (perf_hooks.monitorEventLoopDelay, sampled every 100 ms since issue 15, 10 ms before). */
  readonly event_loop_delay_max_ms: number;
  readonly event_loop_delay_p99_ms: number;
  readonly gc_seconds: number;
  readonly gcs: number;
  readonly cpu_seconds: number;
  readonly watch_restarts: number;
  /** p99 of each stage histogram (etcd_registrar_change_stage_seconds; bucket upper bounds, ms). */
  readonly stage_p99_ms: Record<string, number | null>;
}

export interface LatencyRun {
  readonly target_rate: number;
  readonly driver: LatencyDriver;
  /** End to end (t0 -> etcd watch; see decomposition.*.t0). */
  readonly registration: LatencySummary;
  readonly deregistration: LatencySummary;
  readonly decomposition: { readonly registration: Decomposition; readonly deregistration: Decomposition };
  readonly controller: ControllerDuringRun;
  /** The bench process's own event-loop delay over the run: how late its t0 stamps can be. */
  readonly bench_event_loop_delay: { readonly p99_ms: number; readonly max_ms: number };
  /** Raw samples (ms), for the CDF chart. */
  readonly registrationSamples: number[];
  readonly deregistrationSamples: number[];
}

/** One burst: N pods turn Ready while the controller is paused; figures from its resume. */
export interface BurstFigures {
  readonly pods: number;
  /** Last Ready as the controller can see it (the later of the last Ready and its resume) -> last key PUT. */
  readonly seconds: number;
  /** pods / (last key PUT - controller resumed): registration throughput over the burst. */
  readonly keys_per_s: number;
  /** Seconds from the first to the last pod turning Ready (how fast the cluster produced them). */
  readonly ready_spread_seconds: number;
  /** Pods already Ready when the paused controller was resumed. */
  readonly ready_at_resume: number;
  readonly raw_keys_per_s: number;
  readonly ratio: number;
  readonly missing: number;
  /** CPU seconds (user + system) the controller used from its resume to the last key. */
  readonly controller_cpu_s: number;
  /** Watch events of the burst's pods the controller had to take in after its resume (one per pod: its Ready). */
  readonly replay_events: number;
  /**
   * MB the idle client received for them: the watch's response body in the controller's content
   * type (its wire size). Runs without `json`/`protobuf` sides (before issue 15): the events' JSON size.
   */
  readonly replay_mb: number;
  /**
   * Seconds an idle client takes to receive the same events, decoding and slimming them and nothing
   * else (bench/replay-floor.ts): the intake floor, on the project's own transport
   * (src/source/kube-http.ts) in the controller's content type. Runs without `json`/`protobuf`
   * sides (before issue 15): client-node's Watch and JSON.stringify.
   */
  readonly replay_seconds: number;
  /** How fast the bench set the pods Ready (status updates per second, 32 in flight) while the controller was paused. */
  readonly status_updates_per_s: number;
  /** replay_events / replay_seconds: the most keys per second any controller fed by this API server's watch could reach. */
  readonly intake_floor_keys_per_s: number;
  /** keys_per_s / intake_floor_keys_per_s. */
  readonly ratio_to_intake_floor: number;
  /**
   * The machine's CPU from the resume to the last key (read within 0.1 s after it): the
   * controller, each cluster process, the bench; whether the burst had the cores to itself.
   * Absent in runs before 2026-12-04 evening.
   */
  readonly cpu_budget?: CpuBudget;
  /**
   * A fixed piece of the controller's work timed in a fresh process right after the burst's
   * replay (bench/pace.ts): the machine's speed in that minute. Absent in runs before 2026-12-07.
   */
  readonly machine_pace?: MachinePace;
}

/** One side of the JSON vs protobuf burst: a fresh controller run with --kube-content-type `content_type`. */
export interface BurstSide extends BurstFigures {
  readonly content_type: KubeContentType;
}

/**
 * The burst. Since issue 15 it runs twice on the same cluster, one after the other, each on a
 * fresh controller: `json` and `protobuf` (--kube-content-type); the top-level figures are the
 * protobuf side's (the shipped default). Older runs have neither side: their figures are of one
 * burst on the latency runs' controller.
 */
export interface BurstResult extends BurstFigures {
  readonly content_type?: KubeContentType;
  readonly json?: BurstSide;
  readonly protobuf?: BurstSide;
}

/** A full list of the pods present, slimmed into a Map, in a fresh child process (bench/intake-child.ts). */
export interface RelistResult {
  readonly content_type: KubeContentType;
  /** Pods in the list (slimmed and cached). */
  readonly items: number;
  readonly seconds: number;
  /** CPU seconds (user + system, the child's whole process) over the list. */
  readonly cpu_s: number;
  /** The child's peak RSS over its life (its baseline included). */
  readonly peak_rss_mb: number;
  /** The child's RSS after its imports, before the list: peak_rss_mb - baseline_rss_mb is the list's own. */
  readonly baseline_rss_mb: number;
  readonly heap_used_after_gc_mb: number;
  readonly gc_ms: number;
}

export interface ReconcileResult {
  readonly pods: number;
  readonly keys: number;
  readonly foreign_keys: number;
  /** Mean duration of the periodic full reconciles in the window (etcd read + plan; nothing to change). */
  readonly ms: number;
  /** The controller's CPU time in the window per reconcile (an upper bound: it includes whatever else it did). */
  readonly cpu_ms: number;
  readonly reconciles: number;
  readonly rss_mb: number;
  readonly heap_used_mb: number;
}

export interface RestartResult {
  readonly pods: number;
  /** Process start -> /readyz OK, which it reports only after the first full reconcile finished. */
  readonly seconds: number;
  /** The first full reconcile alone, as the controller logs it. */
  readonly reconcile_ms: number;
  readonly keys_deleted: number;
  readonly keys_written: number;
}

/**
 * Since issue 15: the restarted controller's pod watch after the API server restarted (its
 * watch cache starts afresh, so the old resourceVersion is refused: 410, or a failed watch):
 * the relist that follows, on the controller at rest with every pod registered.
 */
export interface ExpiryRelistResult {
  readonly pods: number;
  /** How the watch ended, from the controller's log: 'gone' (410), 'error', or 'none' (it resumed without a relist). */
  readonly cause: 'gone' | 'error' | 'none';
  /** The list that succeeded: its start (the last failed attempt's log line plus the backoff it logged) to "pods listed". */
  readonly seconds: number;
  /** The controller's CPU from the API server's restart until the relist was done. */
  readonly cpu_s: number;
  /** The controller's highest RSS sampled (every 100 ms) over the same span. */
  readonly peak_rss_mb: number;
  /** Keys deleted or written in etcd meanwhile (a relist of unchanged pods must change nothing). */
  readonly keys_deleted: number;
  readonly keys_written: number;
}

export interface SteadyFigures {
  readonly registered_keys: number;
  readonly window_seconds: number;
  readonly etcd_requests_per_s: number;
  readonly etcd_stream_messages_per_s: number;
  readonly cpu_percent: number;
  readonly rss_mb: number;
  readonly heap_used_mb: number;
}

/** A steady-state controller on other Node settings than the shipped ones. */
export interface SteadyVariant extends SteadyFigures {
  /** The Node flags it ran with ('' = none: Node's defaults). */
  readonly node_options: string;
}

/** The restarted controller (the shipped Node settings: controllerNodeOptions) at rest. */
export interface SteadyResult extends SteadyFigures {
  /**
   * Since issue 15: a controller started afterwards with Node's default V8 settings (no
   * --max-semi-space-size, no --optimize-for-size), measured the same way over the same window.
   */
  readonly node_defaults?: SteadyVariant;
  /**
   * Since issue 15: Node's defaults again, inside a memory cgroup with the chart's default limit,
   * as a pod runs (Node sizes V8's heap from the memory it may use); absent where no cgroup can be made.
   */
  readonly node_defaults_in_limit?: SteadyVariant & { readonly memory_limit_mb: number };
}

/** The raw etcd write path at a run's rate: one guarded single-key txn at a time, paced. */
export interface RawEtcd {
  readonly rate: number;
  /** txn sent -> response. */
  readonly put_txn: Quantiles;
  readonly delete_txn: Quantiles;
  /** txn sent -> the revision on the bench's etcd watch. */
  readonly put_to_watch: Quantiles;
  readonly delete_to_watch: Quantiles;
}

export interface Calibration {
  readonly raw_etcd: RawEtcd;
  /** p99 of (idle watcher's delay + raw txn-to-watch), paired sample by sample: the e2e floor of this machine. */
  readonly floor_p99_ms: { readonly registration: number; readonly deregistration: number };
}

export interface TargetCheck {
  readonly p99_ms: number;
  readonly limit_ms: number;
  readonly met: boolean;
}

/** The issue-16 targets for the fastest bench-driven run. */
export interface Targets {
  readonly rate: number;
  /** Watch event received -> txn committed, p99 <= 20 ms. */
  readonly controller: { readonly registration: TargetCheck; readonly deregistration: TargetCheck };
  /** API ack -> etcd watch, p99 <= 50 ms or within 20 ms of the floor measured in the same run. */
  readonly e2e: { readonly registration: TargetCheck; readonly deregistration: TargetCheck };
}

export interface BenchResult {
  readonly size: BenchSize;
  readonly machine: { readonly cpus: number; readonly node: string; readonly platform: string };
  /** The controllers' Node tuning and extra flags (controllerNodeOptions). */
  readonly controller_node_options: string;
  readonly started_at: string;
  readonly duration_s: number;
  readonly registration: LatencySummary;
  readonly deregistration: LatencySummary;
  readonly latency_runs: LatencyRun[];
  readonly burst: BurstResult;
  readonly reconcile: ReconcileResult[];
  readonly restart: RestartResult;
  readonly steady: SteadyResult;
  /** Since issue 15: a full list of the reconcile tier's pods, per content type. */
  readonly relist?: { readonly json: RelistResult; readonly protobuf: RelistResult };
  /** Since issue 15: the controller's relist after its watch expired (API server restart). */
  readonly expiry_relist?: ExpiryRelistResult;
  readonly calibration: Calibration | undefined;
  readonly targets: Targets | undefined;
  readonly load: LoadReport | undefined;
  readonly notes: string[];
}

const NAMESPACE = 'bench';
const PREFIX = '/bench_PRE/';
const RAW_PREFIX = '/bench_raw/';
export const REC_NAMESPACE = 'bench-rec';
/** Keys of the reconcile/restart/steady controller: pods annotated with service "rec". */
const REC_PREFIX = '/rec_PRE/';
const FOREIGN_PREFIX = '/bench_foreign/';
export const GRANTS_ANNOTATION = 'etcd-registrar.io/allowed-services';
const BURST_HOLD_MS = 25_000;
/** Pods of the warm-up burst each side's fresh controller serves before its measured burst. */
const WARM_UP_PODS = 1_000;
const RAW_RUNS = 3;
// The burst pauses the controller (SIGSTOP) for up to BURST_HOLD_MS; with the default TTLs
// (election 5 s, data lease 30 s) it would lose leadership and exit, so both are 60 s here.
const LEASE_ARGS = ['--election-ttl', '60s', '--lease-ttl', '60s'];
/** Longer than a burst controller's life (warm-up, pause and burst take 1–3 minutes). */
const BURST_RECONCILE_INTERVAL = '30m';
const ANNOTATIONS = {
  'etcd-registrar.io/register': 'true',
  'etcd-registrar.io/service': 'bench',
  'etcd-registrar.io/port': '86',
};

const round = (x: number, d = 10): number => Math.round(x * d) / d;
const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)));

interface PodSeen {
  ip?: string;
  readyAt?: number;
  /** resourceVersion of the event in which it was first seen Ready. */
  readyRv?: string;
  deletionAt?: number;
}


/** Independent Kubernetes observer: first time each pod is seen Ready (with an IP) and terminating. */
class PodObserver {
  readonly pods = new Map<string, PodSeen>();
  /** When each resourceVersion arrived (the observer lag against the API server's acknowledgement). */
  readonly arrivals = new Map<string, number>();
  #abort: AbortController | undefined;
  #stopped = false;
  readonly #watch: Watch;

  constructor(kc: KubeConfig) {
    this.#watch = new Watch(kc);
  }

  async start(): Promise<void> {
    const onEvent = (phase: string, pod: V1Pod): void => {
      const now = preciseNow();
      const name = pod.metadata?.name;
      if (name === undefined) return;
      const rv = pod.metadata?.resourceVersion ?? '';
      if (!this.arrivals.has(rv)) this.arrivals.set(rv, now);
      const seen = this.pods.get(name) ?? {};
      const ip = pod.status?.podIP;
      if (ip !== undefined && ip !== '') seen.ip = ip;
      const ready = pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True') ?? false;
      if (ready && seen.ip !== undefined && seen.readyAt === undefined) {
        seen.readyAt = now;
        seen.readyRv = rv;
      }
      if (pod.metadata?.deletionTimestamp !== undefined && seen.deletionAt === undefined) seen.deletionAt = now;
      // An unscheduled pod is removed at once, without a deletionTimestamp first.
      if (phase === 'DELETED' && seen.deletionAt === undefined) seen.deletionAt = now;
      this.pods.set(name, seen);
    };
    let resourceVersion = '';
    const track = (phase: string, pod: V1Pod): void => {
      const rv = pod.metadata?.resourceVersion;
      if (rv !== undefined && rv !== '') resourceVersion = rv;
      if (phase === 'ERROR') {
        resourceVersion = ''; // 410 Gone: start over (first-seen times are kept)
        return;
      }
      if (phase !== 'BOOKMARK') onEvent(phase, pod);
    };
    const begin = async (): Promise<void> => {
      // The server (or client-node's inactivity timer) ends watches: resume where it ended, so
      // that no DELETED event is lost in between.
      const params = resourceVersion === '' ? { allowWatchBookmarks: true } : { allowWatchBookmarks: true, resourceVersion };
      this.#abort = await this.#watch.watch(`/api/v1/namespaces/${NAMESPACE}/pods`, params, track, () => {
        if (!this.#stopped) void sleep(100).then(begin).catch(() => undefined);
      });
    };
    await begin();
  }

  stop(): void {
    this.#stopped = true;
    this.#abort?.abort();
  }
}

interface KeyEvent {
  readonly type: 'put' | 'delete';
  readonly at: number;
  readonly revision: string;
}

/** Independent etcd observer: every PUT and DELETE under the prefix with the time it was seen. */
class KeyObserver {
  readonly events = new Map<string, KeyEvent[]>();
  readonly client: Etcd3;
  #watcher: Watcher | undefined;

  constructor(endpoints: readonly string[]) {
    this.client = new Etcd3({ hosts: [...endpoints] });
  }

  async start(prefix: string): Promise<void> {
    const watcher = await this.client.watch().prefix(prefix).create();
    const record = (type: 'put' | 'delete') => (kv: { key: Buffer; mod_revision: string }) => {
      const at = preciseNow();
      const key = kv.key.toString();
      const list = this.events.get(key) ?? [];
      list.push({ type, at, revision: kv.mod_revision });
      this.events.set(key, list);
    };
    watcher.on('put', record('put'));
    watcher.on('delete', record('delete'));
    watcher.on('error', () => undefined);
    this.#watcher = watcher;
  }

  async close(): Promise<void> {
    await this.#watcher?.cancel().catch(() => undefined);
    this.client.close();
  }

  /** First event of `type` on `key` at or after `since`. */
  first(key: string, type: 'put' | 'delete', since: number): number | undefined {
    return this.firstEvent(key, type, since)?.at;
  }

  firstEvent(key: string, type: 'put' | 'delete', since: number): KeyArrival | undefined {
    return this.events.get(key)?.find((e) => e.type === type && e.at >= since);
  }
}

function keyOf(ip: string): string {
  return `${PREFIX}${ip}-86`;
}

/** The controller under test; waits fail fast if it exits (e.g. after losing leadership). */
let underTest: ControllerProcess | undefined;

async function waitUntil(check: () => boolean, timeoutMs: number, refresh?: () => Promise<void>): Promise<boolean> {
  // Monotonic: a paused VM (host snapshot) moves the wall clock on, not the time the bench waited.
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline) {
    await refresh?.();
    if (check()) return true;
    if (underTest !== undefined && !underTest.proc.isRunning()) {
      throw new Error(`the controller exited during the benchmark; see ${underTest.logPath}`);
    }
    await sleep(100);
  }
  return check();
}

/** Runs task(0) … task(count - 1), 32 at a time: what the bench asks of the API server at once. */
async function inParallel(count: number, task: (i: number) => Promise<unknown>): Promise<void> {
  let next = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    for (let i = next++; i < count; i = next++) await task(i);
  }));
}

/** Runs `task(i)` for i in [0, count) at `rate` starts per second, without waiting for each. */
async function paced(count: number, rate: number, task: (i: number) => Promise<unknown>): Promise<number> {
  const t0 = Date.now();
  const pending: Array<Promise<unknown>> = [];
  let failures = 0;
  for (let i = 0; i < count; i++) {
    await sleep(t0 + (i * 1000) / rate - Date.now());
    pending.push(task(i).catch(() => { failures++; }));
  }
  await Promise.all(pending);
  return failures;
}

export function podBody(name: string, app: string): V1Pod {
  return {
    apiVersion: 'v1',
    kind: 'Pod',
    metadata: { name, namespace: NAMESPACE, labels: { app }, annotations: { ...ANNOTATIONS } },
    spec: { terminationGracePeriodSeconds: 30, containers: [{ name: 'app', image: 'bench:1', ports: [{ containerPort: 86 }] }] },
  };
}

/**
 * Starts the controller under test with the image's Node flags (controllerNodeOptions). Profiling
 * aids (docs/benchmarks.md): BENCH_CONTROLLER_NODE_OPTIONS replaces those flags; with BENCH_CPU_PROF_DIR
 * set, it runs with `--cpu-prof` and writes a V8 CPU profile there when it exits (bench/profile.ts
 * summarises one); with BENCH_HEAP_SNAPSHOT_DIR set, it writes a heap snapshot there at the end of
 * the steady window (bench/heap.ts summarises one); with BENCH_ALLOC_PROF_DIR set, it samples its
 * allocations for a while after each resume (bench/alloc-profile.ts). `nodeDefaults`: none of these flags (Node's
 * default V8 settings; the profiling aids do not apply either).
 */
async function startBenchController(args: Parameters<typeof startController>[0] & { readonly nodeDefaults?: boolean }): Promise<ControllerProcess> {
  const { nodeDefaults = false, ...controllerArgs } = args;
  if (nodeDefaults) {
    // Node's default V8 settings: none of the flags below (nor the experiment's), and without
    // ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE (which the bin reads) in the environment it inherits.
    const optimize = process.env['ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE'];
    delete process.env['ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE'];
    try {
      return await startController(controllerArgs);
    } finally {
      if (optimize !== undefined) process.env['ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE'] = optimize;
    }
  }
  const cpuDir = process.env['BENCH_CPU_PROF_DIR'] ?? '';
  const heapDir = process.env['BENCH_HEAP_SNAPSHOT_DIR'] ?? '';
  const allocDir = process.env['BENCH_ALLOC_PROF_DIR'] ?? '';
  const flags = [
    // What the bin's shebang and the image's entrypoint pass (V8 takes it only at start-up).
    '--max-semi-space-size=4',
    ...extraNodeFlags(),
    ...(cpuDir === '' ? [] : ['--cpu-prof', `--cpu-prof-dir=${cpuDir}`]),
    ...(heapDir === '' ? [] : ['--heapsnapshot-signal=SIGUSR2', `--diagnostic-dir=${heapDir}`]),
    // The preload reads BENCH_ALLOC_PROF_DIR from the environment the controller inherits.
    ...(allocDir === '' ? [] : [`--import=${import.meta.dirname}/alloc-profile.ts`]),
  ];
  // As command-line flags: NODE_OPTIONS refuses most V8 flags (--optimize-for-size among them).
  return startController({ ...controllerArgs, nodeOptions: [...(controllerArgs.nodeOptions ?? []), ...flags] });
}

/**
 * Extra Node flags for the controllers (BENCH_CONTROLLER_NODE_OPTIONS, for experiments). The
 * controller's own tuning (--max-semi-space-size=4 as in the image; --optimize-for-size with
 * ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true) applies either way.
 */
export function controllerNodeOptions(): string {
  const tuning = process.env['ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE'] === 'true'
    ? '--max-semi-space-size=4 ETCD_REGISTRAR_OPTIMIZE_FOR_SIZE=true'
    : '--max-semi-space-size=4';
  return `${tuning} ${process.env['BENCH_CONTROLLER_NODE_OPTIONS'] ?? ''}`.trim();
}

/**
 * BENCH_LATENCY_CONTROLLER_ENTRY, BENCH_BURST_CONTROLLER_ENTRY (experiments): the script the
 * latency phase's controller, resp. the burst's two controllers, run instead of this checkout's
 * bin, e.g. an older commit's bin in a worktree: that controller is timed by this bench's driver
 * and observers, so a difference between the two is the controller's. The other phases run this
 * checkout's controller (their flags may be newer).
 */
function controllerEntry(variable: 'BENCH_LATENCY_CONTROLLER_ENTRY' | 'BENCH_BURST_CONTROLLER_ENTRY'): { entry?: string } {
  const entry = process.env[variable] ?? '';
  return entry === '' ? {} : { entry };
}

/** BENCH_WARM_UP_PODS (experiments): the warm-up burst's size instead of WARM_UP_PODS. */
function warmUpPods(): number {
  const text = process.env['BENCH_WARM_UP_PODS'] ?? '';
  if (text === '') return WARM_UP_PODS;
  const pods = Number(text);
  if (!/^\d+$/.test(text) || !Number.isSafeInteger(pods)) throw new Error(`BENCH_WARM_UP_PODS must be a whole number of pods, not ${JSON.stringify(text)}`);
  return pods;
}

function extraNodeFlags(): string[] {
  return (process.env['BENCH_CONTROLLER_NODE_OPTIONS'] ?? '').split(' ').filter((f) => f !== '');
}

async function fetchText(url: string): Promise<string> {
  const response = await fetch(url);
  return response.text();
}

async function fetchJson<T>(url: string): Promise<T> {
  const response = await fetch(url);
  if (!response.ok) throw new Error(`${url}: HTTP ${response.status}`);
  return (await response.json()) as T;
}

export async function runBench(options: BenchOptions): Promise<BenchResult> {
  const log = options.log ?? (() => undefined);
  const profile = { ...PROFILES[options.size], ...(options.reconcilePods === undefined ? {} : { reconcilePods: options.reconcilePods }) };
  const startedAt = Date.now();
  const notes: string[] = [];
  // Read before the cluster starts: a wrong value ends the run at once, not minutes later.
  const warmUpCount = warmUpPods();
  let cluster: Cluster | undefined;
  let controller: ControllerProcess | undefined;
  let pods: PodObserver | undefined;
  let keys: KeyObserver | undefined;
  let paused: ControllerProcess | undefined;
  try {
    log('starting cluster');
    cluster = await startCluster({ nodes: 3 });
    await cluster.createNamespace(NAMESPACE);
    // Grant the service to its namespace, as a configured installation would: with the default
    // --service-grants open, ungranted pods each cost a warning log line and a Warning Event.
    await cluster.kubectl(['annotate', 'namespace', NAMESPACE, `${GRANTS_ANNOTATION}=bench`]);
    // One connection pool for the bench's own API calls too (client-node opens one per call otherwise).
    const kc: KubeConfig = await sharedConnectionKubeConfig();
    kc.loadFromFile(cluster.kubeconfigPath);
    const core = kc.makeApiClient(CoreV1Api);
    pods = new PodObserver(kc);
    await pods.start();
    keys = new KeyObserver(cluster.registry.endpoints);
    await keys.start(PREFIX);
    log('starting controller');
    controller = await startBenchController({
      kubeconfig: cluster.kubeconfigPath,
      etcdEndpoints: cluster.registry.endpoints,
      extraArgs: ['--environment', 'PRE', '--owner-id', 'bench', '--namespaces', NAMESPACE, ...LEASE_ARGS],
      ...controllerEntry('BENCH_LATENCY_CONTROLLER_ENTRY'),
    });
    await controller.waitReady(60_000);
    underTest = controller;
    const latencyEntry = controllerEntry('BENCH_LATENCY_CONTROLLER_ENTRY').entry;
    if (latencyEntry !== undefined) notes.push(`latency: the controller ran ${latencyEntry} (BENCH_LATENCY_CONTROLLER_ENTRY), not this checkout's bin`);

    // 1 + 2: registration and deregistration latency at a paced transition rate. t0 is the API
    // server's acknowledgement of the bench's own request (the status update to Ready, the DELETE
    // that sets the deletionTimestamp), except for KWOK's Ready, which the bench only observes;
    // t1 is the etcd revision's arrival on the bench's etcd watch.
    const latencyRuns: LatencyRun[] = [];
    const metricsUrl = `${controller.metricsUrl}/metrics`;
    const debugUrl = `${controller.metricsUrl}/debug/latency`;
    const observer = pods;
    const keyObserver = keys;
    const driverClient = new PodDriver(await kubeAccessFromFile(cluster.kubeconfigPath));
    /** The idle watcher's delays of the last bench-driven run, for the floor. */
    let benchIntakeFloor: Record<'registration' | 'deregistration', number[]> = { registration: [], deregistration: [] };
    for (const [index, [rate, count, driver = 'kwok']] of profile.latencyRuns.entries()) {
      const names = Array.from({ length: count }, (_, i) => `reg${index}-${i}`);
      const ipOf = new Map<string, string>();
      const regAcks = new Map<string, { t0: number; rv: string }>();
      let created: V1Pod[] = [];
      const readyBodies: string[] = [];
      // The bench's own pods get their IPs from it; KWOK's from KWOK, as the observer saw them.
      const ipOfPod = (name: string): string | undefined => ipOf.get(name) ?? observer.pods.get(name)?.ip;
      if (driver === 'bench') {
        log(`registration: creating ${count} unscheduled pods (with a finalizer, so that a DELETE sets a deletionTimestamp)`);
        created = await createHeldPods(driverClient, names, `reg${index}`);
        // Serialised before the clock starts: the paced loop only sends.
        const now = new Date();
        created.forEach((pod, i) => {
          const ip = `10.${250 + index}.${(i >> 8) & 255}.${i & 255}`;
          ipOf.set(names[i] ?? '', ip);
          readyBodies[i] = JSON.stringify(withReadyStatus(pod, ip, now));
        });
      }
      // The idle watcher (intake floor) and the controller's counters start before the clock.
      const probe: WatchProbe = await startWatchProbe(cluster.kubeconfigPath, NAMESPACE, cluster.registry.endpoints, PREFIX);
      const trace: ControllerTiming[] = [];
      let scrapeBefore: string;
      let scrapeAfter: string;
      let loadBefore: ReturnType<typeof cpuSnapshot>;
      let regStart: number;
      let delAcks: Map<string, { t0: number; rv: string }>;
      let delStart: number;
      let probed: ProbeResult;
      const driverDelay = new DriverDelay();
      let benchDelay: { p99_ms: number; max_ms: number };
      try {
        scrapeBefore = await fetchText(metricsUrl);
        loadBefore = cpuSnapshot();
        regStart = preciseNow();
        if (driver === 'kwok') {
          log(`registration: ${count} pods at ${rate}/s (made Ready by KWOK)`);
          const createFailures = await paced(count, rate, (i) => core.createNamespacedPod({ namespace: NAMESPACE, body: podBody(names[i] ?? '', `reg${index}`) }));
          if (createFailures > 0) notes.push(`registration @${rate}/s: ${createFailures} pod creations failed`);
        } else {
          log(`registration: setting ${count} pods Ready at ${rate}/s`);
          const readyFailures = await paced(count, rate, async (i) => {
            const name = names[i] ?? '';
            const ack = await driverClient.replaceStatus(NAMESPACE, name, readyBodies[i] ?? '');
            regAcks.set(name, { t0: ack.at, rv: ack.resourceVersion });
          });
          if (readyFailures > 0) notes.push(`registration @${rate}/s: ${readyFailures} status updates failed`);
        }
        const registeredAt = (name: string): number | undefined => {
          const ip = ipOfPod(name);
          return ip === undefined ? undefined : keyObserver.first(keyOf(ip), 'put', regStart);
        };
        await waitUntil(() => names.every((n) => registeredAt(n) !== undefined), profile.settleMs);
        // The controller keeps its last 8,192 changes: read them after each half.
        trace.push(...(await fetchJson<ControllerTiming[]>(debugUrl)));

        log(`deregistration: deleting ${count} pods at ${rate}/s`);
        delAcks = new Map();
        const acks = delAcks;
        delStart = preciseNow();
        const delFailures = await paced(count, rate, async (i) => {
          const name = names[i] ?? '';
          const ack = await driverClient.delete(NAMESPACE, name);
          acks.set(name, { t0: ack.at, rv: ack.resourceVersion });
          if (driver === 'bench') created[i] = ack.pod;
        });
        if (delFailures > 0) notes.push(`deregistration @${rate}/s: ${delFailures} pod deletions failed`);
        const deletedAt = (name: string): number | undefined => {
          const ip = ipOfPod(name);
          return ip === undefined ? undefined : keyObserver.first(keyOf(ip), 'delete', delStart);
        };
        await waitUntil(() => names.every((n) => deletedAt(n) !== undefined), profile.settleMs);
        trace.push(...(await fetchJson<ControllerTiming[]>(debugUrl)));
        scrapeAfter = await fetchText(metricsUrl);
        options.load?.record(`latency @${rate}/s`, loadBefore);
        benchDelay = driverDelay.stop();
      } catch (error) {
        driverDelay.stop();
        probe.kill();
        throw error;
      }
      if (benchDelay.p99_ms > 10) notes.push(`latency @${rate}/s: the bench's own event loop was late by up to ${benchDelay.p99_ms} ms (p99; max ${benchDelay.max_ms} ms): its t0 stamps can be that late, so end-to-end figures that much too low`);
      probed = await probe.dump().catch((error: unknown) => {
        notes.push(`latency @${rate}/s: the watch probe failed (no intake floor; t1 from the bench's in-process etcd watch): ${String(error)}`);
        probe.kill();
        return { pods: new Map(), keys: new Map() };
      });
      // t1: the probe's etcd watch (out of the driver's process); the bench's own if the probe missed it.
      const t1 = (key: string, type: 'put' | 'delete', since: number): KeyArrival | undefined =>
        probed.keys.get(key)?.find((e) => e.type === type && e.at >= since) ?? keyObserver.firstEvent(key, type, since);
      if (driver === 'bench') {
        // Out of the clock: the finalizers go, and with them the pods.
        const stuck = await releasePods(driverClient, created);
        if (stuck > 0) notes.push(`latency @${rate}/s: ${stuck} pods kept the bench's finalizer`);
      }

      const transitions = (acks: ReadonlyMap<string, { t0: number; rv: string }> | undefined, observed: (seen: PodSeen) => { t0?: number | undefined; rv?: string | undefined }): Transition[] =>
        names.flatMap((name) => {
          const ip = ipOfPod(name);
          const ack = acks?.get(name);
          const seen = observed(observer.pods.get(name) ?? {});
          const t0 = ack?.t0 ?? seen.t0;
          return ip === undefined || t0 === undefined ? [] : [{ key: keyOf(ip), t0, resourceVersion: ack?.rv ?? seen.rv ?? '' }];
        });
      const regT0 = driver === 'bench' ? 'api-ack' : 'observer';
      const reg = decompose('registration', regT0, transitions(driver === 'bench' ? regAcks : undefined, (seen) => ({ t0: seen.readyAt, rv: seen.readyRv })), (key) => t1(key, 'put', regStart), trace, probed.pods, observer.arrivals);
      const del = decompose('deregistration', 'api-ack', transitions(delAcks, () => ({})), (key) => t1(key, 'delete', delStart), trace, probed.pods, observer.arrivals);
      // KWOK's Ready is timed from the observer, which can see it after etcd: such samples count as 0 ms (as before).
      const regE2e = regT0 === 'observer' ? reg.e2e.map((v) => Math.max(0, v)) : reg.e2e;
      if (regT0 === 'observer' && reg.decomposition.observer_after_etcd > 0) notes.push(`registration @${rate}/s: ${reg.decomposition.observer_after_etcd} keys were seen before the bench's own watch saw Ready (counted as 0 ms)`);
      if (driver === 'bench') benchIntakeFloor = { registration: reg.samples.intake_floor, deregistration: del.samples.intake_floor };
      // Profiling aid: every transition with its stages, for analysis over time.
      const samplesDir = process.env['BENCH_SAMPLES_DIR'] ?? '';
      if (samplesDir !== '') writeFileSync(`${samplesDir}/latency-${rate}.json`, JSON.stringify({ registration: reg.rows, deregistration: del.rows }));
      const regMissing = count - reg.e2e.length;
      const delMissing = count - del.e2e.length;
      const stageP99 = (stage: string, change: string): number | null => {
        const q = histogramQuantile(scrapeBefore, scrapeAfter, 'etcd_registrar_change_stage_seconds', { stage, change }, 0.99);
        return q === undefined ? null : Number.isFinite(q) ? round(q * 1000, 10) : -1;
      };
      const delta = (name: string): number => (metricSum(scrapeAfter, name) ?? 0) - (metricSum(scrapeBefore, name) ?? 0);
      const run: LatencyRun = {
        target_rate: rate,
        driver,
        registration: summarize(regE2e, reg.starts, regMissing),
        deregistration: summarize(del.e2e, del.starts, delMissing),
        decomposition: { registration: reg.decomposition, deregistration: del.decomposition },
        controller: {
          event_loop_delay_max_ms: round((metricSum(scrapeAfter, 'etcd_registrar_nodejs_eventloop_lag_max_seconds') ?? 0) * 1000, 10),
          event_loop_delay_p99_ms: round((metricSum(scrapeAfter, 'etcd_registrar_nodejs_eventloop_lag_p99_seconds') ?? 0) * 1000, 10),
          gc_seconds: round(delta('etcd_registrar_nodejs_gc_duration_seconds_sum'), 1000),
          gcs: delta('etcd_registrar_nodejs_gc_duration_seconds_count'),
          cpu_seconds: round(delta('etcd_registrar_process_cpu_seconds_total'), 100),
          watch_restarts: delta('etcd_registrar_watch_restarts_total'),
          stage_p99_ms: Object.fromEntries(['registration', 'deregistration'].flatMap((change) => ['intake', 'queue', 'plan', 'txn', 'total'].map((stage) => [`${change}.${stage}`, stageP99(stage, change)]))),
        },
        bench_event_loop_delay: benchDelay,
        registrationSamples: regE2e,
        deregistrationSamples: del.e2e,
      };
      latencyRuns.push(run);
      log(describeBreakdown(`registration @${rate}/s`, reg.decomposition));
      log(describeBreakdown(`deregistration @${rate}/s`, del.decomposition));
      log(`controller @${rate}/s: event-loop delay max ${run.controller.event_loop_delay_max_ms} ms (p99 ${run.controller.event_loop_delay_p99_ms} ms), GC ${run.controller.gc_seconds} s in ${run.controller.gcs} collections, CPU ${run.controller.cpu_seconds} s, watch restarts ${run.controller.watch_restarts}`);
    }

    // Calibration: the raw etcd write path at the fastest bench-driven run's rate.
    const fastest = latencyRuns.filter((r) => r.driver === 'bench').at(-1);
    let calibration: Calibration | undefined;
    let targets: Targets | undefined;
    if (fastest !== undefined) {
      const n = profile.calibrationTxns;
      log(`calibration: ${n} raw single-key txns (put, then delete) at ${fastest.target_rate}/s`);
      const raw = await rawTxnLatency(keys.client, cluster.registry.endpoints, n, fastest.target_rate);
      const d = fastest.decomposition;
      // Floor samples: the idle watcher's delay per transition plus a raw txn-to-watch sample.
      const floors = { registration: floorP99(benchIntakeFloor.registration, raw.putToWatch), deregistration: floorP99(benchIntakeFloor.deregistration, raw.deleteToWatch) };
      calibration = { raw_etcd: raw.summary, floor_p99_ms: floors };
      const check = (p99: number, limit: number): TargetCheck => ({ p99_ms: p99, limit_ms: limit, met: p99 <= limit });
      targets = {
        rate: fastest.target_rate,
        controller: { registration: check(d.registration.stages.controller.p99_ms, 20), deregistration: check(d.deregistration.stages.controller.p99_ms, 20) },
        e2e: {
          registration: check(d.registration.stages.e2e.p99_ms, round(Math.max(50, floors.registration + 20), 10)),
          deregistration: check(d.deregistration.stages.e2e.p99_ms, round(Math.max(50, floors.deregistration + 20), 10)),
        },
      };
      log(`calibration: raw etcd txn p99 put ${raw.summary.put_txn.p99_ms} / delete ${raw.summary.delete_txn.p99_ms} ms, to the watch ${raw.summary.put_to_watch.p99_ms} / ${raw.summary.delete_to_watch.p99_ms} ms; e2e floor p99 reg ${floors.registration} / dereg ${floors.deregistration} ms`);
      for (const kind of ['registration', 'deregistration'] as const) {
        const c = targets.controller[kind];
        const e = targets.e2e[kind];
        log(`target @${targets.rate}/s ${kind}: controller p99 ${c.p99_ms} ms (≤ ${c.limit_ms}: ${c.met ? 'met' : 'NOT met'}), e2e p99 ${e.p99_ms} ms (≤ ${e.limit_ms}: ${e.met ? 'met' : 'NOT met'})`);
      }
    }

    // 3: burst: N pods turn Ready together. They are created first, unscheduled and not Ready
    // (the controller caches them and writes nothing); then the controller is paused (SIGSTOP),
    // every pod is set Running and Ready with an IP by one status update each, as fast as the
    // API server takes them, and the controller is resumed (SIGCONT): it receives exactly one
    // watch event per pod, the Ready transition, all at once. (KWOK would turn them Ready at the
    // scheduler's pace, ~55/s here, and a pause spanning that would also queue each pod's ADDED
    // and scheduling events for the controller.) The leases' TTLs are raised (LEASE_ARGS) so
    // that the pause cannot expire them.
    // JSON vs protobuf (issue 15): the burst runs once per content type, one after the other on
    // the same cluster, each on a fresh controller (--kube-content-type) with pods of its own;
    // the first side's pods are deleted (and their keys with them) before the second starts.
    underTest = undefined;
    await controller.stop();
    controller = undefined;
    const n = profile.burstPods;
    const burstSide = async (side: ControllerProcess, contentType: KubeContentType, prefix: string, net: number): Promise<{ figures: Omit<BurstSide, 'raw_keys_per_s' | 'ratio'>; names: string[]; ips: string[] }> => {
      const burstNames = Array.from({ length: n }, (_, i) => `${prefix}${i}`);
      const ips = burstNames.map((_, i) => `10.${net}.${(i >> 8) & 255}.${i & 255}`);
      log(`burst (${contentType}): creating ${n} pods, unscheduled and not Ready`);
      const burstStart = preciseNow();
      const burstCreated = await createUnscheduledPods(core, burstNames, 'burst');
      // The controller must have taken in every ADDED event before it is paused: its cache holds
      // as many pods as the API server has in the namespace (counted by a one-item list).
      let cached = -1;
      let existing = -2;
      const cachedAll = await waitUntil(() => cached === existing, profile.settleMs, async () => {
        const page = await core.listNamespacedPod({ namespace: NAMESPACE, limit: 1 });
        existing = page.items.length + (page.metadata?.remainingItemCount ?? 0);
        cached = metricSum(await fetchText(`${side.metricsUrl}/metrics`), 'etcd_registrar_watched_pods') ?? -1;
      });
      if (!cachedAll) notes.push(`burst (${contentType}): the controller cached ${cached} pods, the API server has ${existing}`);
      // The replay floor below re-reads the pod events from here.
      const burstRv = (await core.listNamespacedPod({ namespace: NAMESPACE, limit: 1 })).metadata?.resourceVersion ?? '';
      const serverClosures = async (): Promise<number> =>
        metricSum(await fetchText(`${side.metricsUrl}/metrics`), 'etcd_registrar_watch_server_closures_total') ?? 0;
      const closuresBefore = await serverClosures();
      side.proc.signal('SIGSTOP');
      paused = side;
      const readyStarted = Date.now();
      let readyFailures = 0;
      await inParallel(n, (i) => setReady(core, burstCreated[i], ips[i] ?? '').catch(() => { readyFailures++; }));
      const statusUpdatesPerS = n / Math.max(0.001, (Date.now() - readyStarted) / 1000);
      if (readyFailures > 0) notes.push(`burst (${contentType}): ${readyFailures} of ${n} status updates failed`);
      const allReady = await waitUntil(() => burstNames.every((name) => observer.pods.get(name)?.readyAt !== undefined), BURST_HOLD_MS);
      const readyAtResume = burstNames.filter((name) => observer.pods.get(name)?.readyAt !== undefined).length;
      const settle = await settleBeforeResume(clusterNow.processes(), readyStarted + BURST_HOLD_MS);
      const lastWindow = describeCpu(settle.last) || 'nothing';
      log(`burst (${contentType}): ${settle.quiet ? 'cluster quiet' : 'cluster NOT quiet'} after ${round(settle.waitedMs / 1000, 10)} s; CPU s in the last ${SETTLE_WINDOW_MS} ms before the resume: ${lastWindow}`);
      if (!settle.quiet) notes.push(`burst (${contentType}): the cluster was still busy when the controller was resumed (CPU s in the last ${SETTLE_WINDOW_MS} ms: ${lastWindow})`);
      const resumedAt = preciseNow();
      const cpuAtResume = procCpuSeconds(side.proc.pid);
      const machineAtResume = cpuSnapshot();
      side.proc.signal('SIGCONT');
      paused = undefined;
      if (!allReady) notes.push(`burst (${contentType}): only ${readyAtResume} of ${n} pods were seen Ready when the controller was resumed after ${BURST_HOLD_MS / 1000} s`);
      const burstPods = (): Array<[string, PodSeen]> => burstNames.map((name) => [name, observer.pods.get(name) ?? {}]);
      const burstDone = (): boolean =>
        burstPods().every(([, s]) => s.ip !== undefined && s.readyAt !== undefined && keyObserver.first(keyOf(s.ip), 'put', burstStart) !== undefined);
      await waitUntil(burstDone, profile.settleMs);
      // Read at most one poll interval (0.1 s) after the last key.
      const cpuAtDone = procCpuSeconds(side.proc.pid);
      const budget = cpuBudget(machineAtResume, cpuSnapshot(), [{ name: 'controller', pid: side.proc.pid ?? -1 }, ...clusterNow.processes()]);
      // The API server ends the paused controller's pod watch once its buffers are full (logged
      // at -v=1 as "Forcing pods watcher close due to unresponsiveness"), in every full-size
      // burst: the controller resumes it from its resourceVersion without a log line at info
      // level. A second end, the resumed watch ended too, would be news: noted.
      const closures = (await serverClosures()) - closuresBefore;
      log(`burst (${contentType}): the API server ended the controller's pod watch ${closures} time(s) during the pause and the burst`);
      if (closures > 1) notes.push(`burst (${contentType}): the API server ended the controller's pod watch ${closures} times during the burst (once is expected: the paused watcher's buffers fill)`);
      let firstReady = Infinity;
      let lastReady = 0;
      let lastPut = 0;
      let burstMissing = 0;
      for (const [, seen] of burstPods()) {
        const put = seen.ip === undefined ? undefined : keyObserver.first(keyOf(seen.ip), 'put', burstStart);
        if (seen.readyAt === undefined || put === undefined) { burstMissing++; continue; }
        firstReady = Math.min(firstReady, seen.readyAt);
        lastReady = Math.max(lastReady, seen.readyAt);
        lastPut = Math.max(lastPut, put);
      }
      const registered = n - burstMissing;
      // Profiling aid: the controller's own stage times of every burst key (received, enqueued,
      // taken, sent, committed), with the resume time, to see how intake and writes overlap.
      const samplesDir = process.env['BENCH_SAMPLES_DIR'] ?? '';
      if (samplesDir !== '') writeFileSync(`${samplesDir}/burst-${contentType}.json`, JSON.stringify({ resumedAt, lastPut, timings: await fetchJson<unknown>(`${side.metricsUrl}/debug/latency`) }));
      log(`burst (${contentType}): resumed at ${resumedAt}, last Ready at ${lastReady}, last key at ${lastPut} (epoch ms)`);
      const burstSpan = lastPut > resumedAt ? (lastPut - resumedAt) / 1000 : 0;
      const keysPerS = burstSpan > 0 ? registered / burstSpan : 0;
      log(`burst (${contentType}): replaying the same pod events to an idle ${contentType} client (the intake floor)`);
      const replay = await replayFloor(clusterNow.kubeconfigPath, NAMESPACE, burstRv, prefix, contentType);
      if (replay.events === 0) notes.push(`burst (${contentType}): the API server no longer had the burst's events for the replay floor (410 or none); replay figures are 0`);
      if (burstMissing > 0) notes.push(`burst (${contentType}): ${burstMissing} of ${n} pods not Ready and registered within ${profile.settleMs / 1000} s`);
      const floor = replay.seconds > 0 ? replay.events / replay.seconds : 0;
      // A figure beside the burst, not part of it: a failure costs the figure, not the run.
      const pace = await machinePace().catch((err: unknown) => {
        notes.push(`burst (${contentType}): the machine's pace was not measured: ${String(err)}`);
        return undefined;
      });
      log(`burst (${contentType}): ${round(keysPerS)} keys/s, intake floor ${round(floor)} events/s, controller CPU ${round(Math.max(0, cpuAtDone - cpuAtResume), 100)} s`);
      log(`burst (${contentType}): CPU over ${budget.window_s} s (${budget.capacity_core_s} core-s available, ${Math.round(budget.busy_share * 100)} % used): ${describeCpu(budget)}`);
      if (pace !== undefined) log(`burst (${contentType}): machine pace ${pace.median_ms} ms for ${pace.events} pod events parsed, slimmed and mapped (rounds ${pace.best_ms}–${pace.worst_ms} ms; bench/pace.ts)`);
      return {
        names: burstNames,
        ips,
        figures: {
          content_type: contentType,
          pods: n,
          seconds: round(Math.max(0, lastPut - Math.max(lastReady, resumedAt)) / 1000, 1000),
          keys_per_s: round(keysPerS),
          ready_at_resume: readyAtResume,
          ready_spread_seconds: round(Number.isFinite(firstReady) ? (lastReady - firstReady) / 1000 : 0, 1000),
          missing: burstMissing,
          controller_cpu_s: round(Math.max(0, cpuAtDone - cpuAtResume), 100),
          replay_events: replay.events,
          replay_mb: round(replay.bytes / 1e6, 100),
          replay_seconds: round(replay.seconds, 1000),
          status_updates_per_s: round(statusUpdatesPerS),
          intake_floor_keys_per_s: round(floor),
          ratio_to_intake_floor: floor > 0 && replay.events > 0 ? round(keysPerS / floor, 1000) : 0,
          cpu_budget: budget,
          ...(pace === undefined ? {} : { machine_pace: pace }),
        },
      };
    };
    // A fresh controller's first burst runs its code cold (V8 has not optimised the watch
    // decoding, planning and transactions yet): a smaller burst first, registered and then
    // deregistered, so that each side is measured warm, as the controller of the published
    // runs was (it had served the latency phase before its burst).
    const warmUp = async (side: ControllerProcess, contentType: KubeContentType, net: number): Promise<void> => {
      const m = Math.min(n, warmUpCount);
      const names = Array.from({ length: m }, (_, i) => `warm-${contentType}-${i}`);
      const ips = names.map((_, i) => `10.${net}.${200 + (i >> 8)}.${i & 255}`);
      const started = preciseNow();
      const created = await createUnscheduledPods(core, names, 'burst');
      await inParallel(m, (i) => setReady(core, created[i], ips[i] ?? '').catch(() => undefined));
      const registered = await waitUntil(() => ips.every((ip) => keyObserver.first(keyOf(ip), 'put', started) !== undefined), profile.settleMs);
      const deleteStart = preciseNow();
      await inParallel(m, (i) => core.deleteNamespacedPod({ name: names[i] ?? '', namespace: NAMESPACE }).catch(() => undefined));
      const gone = await waitUntil(() => ips.every((ip) => keyObserver.first(keyOf(ip), 'delete', deleteStart) !== undefined), profile.settleMs);
      if (!registered || !gone) notes.push(`burst (${contentType}): the warm-up of ${m} pods did not register and deregister every key`);
      log(`burst (${contentType}): warm-up of ${m} pods registered and deregistered in ${round((preciseNow() - started) / 1000, 10)} s (pid ${side.proc.pid})`);
    };
    const clusterNow = cluster;
    const sides: Array<Omit<BurstSide, 'raw_keys_per_s' | 'ratio'>> = [];
    const burstOrder = [['json', 'burst-json-', 248], ['protobuf', 'burst-pb-', 249]] as const;
    for (const [index, [contentType, prefix, net]] of burstOrder.entries()) {
      log(`burst (${contentType}): starting a controller with --kube-content-type ${contentType}`);
      controller = await startBenchController({
        kubeconfig: cluster.kubeconfigPath,
        etcdEndpoints: cluster.registry.endpoints,
        // A periodic reconcile (60 s by default) is due during the pause when a slow machine
        // stretches it past a minute, and then runs in the window: an etcd read and a plan
        // that the burst's keys/s would count. The intake is what is measured here.
        extraArgs: ['--environment', 'PRE', '--owner-id', 'bench', '--namespaces', NAMESPACE, ...LEASE_ARGS, '--kube-content-type', contentType, '--reconcile-interval', BURST_RECONCILE_INTERVAL],
        name: `etcd-registrar-burst-${contentType}`,
        ...controllerEntry('BENCH_BURST_CONTROLLER_ENTRY'),
      });
      await controller.waitReady(60_000);
      underTest = controller;
      await warmUp(controller, contentType, net);
      const done = await burstSide(controller, contentType, prefix, net);
      sides.push(done.figures);
      if (index < burstOrder.length - 1) {
        // Out of the next side's way: its controller must cache as many pods as this one did.
        log(`burst (${contentType}): deleting its ${n} pods and waiting for their keys to go`);
        const deleteStart = preciseNow();
        await inParallel(n, (i) => core.deleteNamespacedPod({ name: done.names[i] ?? '', namespace: NAMESPACE }).catch(() => undefined));
        const gone = await waitUntil(() => done.ips.every((ip) => keyObserver.first(keyOf(ip), 'delete', deleteStart) !== undefined), profile.settleMs);
        if (!gone) notes.push(`burst (${contentType}): not every key was deleted with its pod before the next side`);
        underTest = undefined;
        await controller.stop();
        controller = undefined;
      }
    }
    // The raw writer is short (a few transactions at 1,000 keys) and noisy: the median of three runs.
    const rawRuns: number[] = [];
    for (let i = 0; i < RAW_RUNS; i++) rawRuns.push(await rawWriter(keys.client, n));
    rawRuns.sort((a, b) => a - b);
    const rawKeysPerS = rawRuns[Math.floor(RAW_RUNS / 2)] ?? 0;
    const withRaw = (side: Omit<BurstSide, 'raw_keys_per_s' | 'ratio'>): BurstSide => ({
      ...side,
      raw_keys_per_s: round(rawKeysPerS),
      ratio: rawKeysPerS > 0 ? round(side.keys_per_s / rawKeysPerS, 1000) : 0,
    });
    const [jsonSide, protobufSide] = sides.map(withRaw);
    if (jsonSide === undefined || protobufSide === undefined) throw new Error('burst: a side is missing');
    const burst: BurstResult = { ...protobufSide, json: jsonSide, protobuf: protobufSide };
    if (controller === undefined) throw new Error('burst: no controller after the last side');

    // 5, 6, 4: full reconcile, restart and steady state, on a controller of their own (owner
    // bench-rec, namespace bench-rec) with the default TTLs and pods made Ready by the bench
    // itself (KWOK alone turns pods Ready at ~55/s: 10,000 would take minutes). The burst's
    // controller is stopped first (its keys stay until its lease expires: foreign to bench-rec).
    underTest = undefined;
    await controller.stop();
    controller = undefined;
    log(`reconcile: writing ${profile.foreignKeys} foreign keys (no lease) under the same root`);
    await writeForeignKeys(keys.client, profile.foreignKeys);
    await cluster.createNamespace(REC_NAMESPACE);
    await cluster.kubectl(['annotate', 'namespace', REC_NAMESPACE, `${GRANTS_ANNOTATION}=rec`]);
    const recKeys = new KeyObserver(cluster.registry.endpoints);
    await recKeys.start(REC_PREFIX);
    const recArgs = ['--environment', 'PRE', '--owner-id', 'bench-rec', '--namespaces', REC_NAMESPACE];
    const etcd = keys.client;
    const recKeyCount = async (): Promise<number> => etcd.getAll().prefix(REC_PREFIX).count();
    const reconcile: ReconcileResult[] = [];
    let created = 0;
    let restart: RestartResult;
    let steady: SteadyResult;
    let relist: BenchResult['relist'];
    let expiryRelist: ExpiryRelistResult | undefined;
    try {
      controller = await startBenchController({
        kubeconfig: cluster.kubeconfigPath,
        etcdEndpoints: cluster.registry.endpoints,
        extraArgs: [...recArgs, '--reconcile-interval', '1s'],
        name: 'etcd-registrar-reconcile',
      });
      await controller.waitReady(60_000);
      underTest = controller;
      for (const podsWanted of profile.reconcilePods) {
        log(`reconcile: ${podsWanted} registered pods (creating ${podsWanted - created} Ready pods)`);
        const failures = await createReadyPods(core, created, podsWanted);
        if (failures > 0) notes.push(`reconcile: ${failures} pods could not be created or made Ready`);
        created = podsWanted;
        let registeredNow = 0;
        await waitUntil(() => registeredNow >= podsWanted - failures, profile.settleMs, async () => { registeredNow = await recKeyCount(); });
        reconcile.push(await measureReconciles(controller, etcd, podsWanted, await recKeyCount(), options.size === 'tiny' ? 2 : 3, profile.settleMs));
      }

      // 6: restart with every pod registered: start -> ready (first full reconcile done), and
      // what it wrote or deleted on the way (nothing is expected: it adopts its lease).
      log(`restart: ${created} registered pods`);
      underTest = undefined;
      await controller.stop();
      controller = undefined;
      const stoppedAt = preciseNow();
      const restartStarted = performance.now();
      controller = await startBenchController({
        kubeconfig: cluster.kubeconfigPath,
        etcdEndpoints: cluster.registry.endpoints,
        extraArgs: recArgs,
        name: 'etcd-registrar-restart',
      });
      await controller.waitReady(profile.settleMs);
      const restartSeconds = (performance.now() - restartStarted) / 1000;
      underTest = controller;
      await sleep(1000);
      // The log is written asynchronously: under load the "ready" line can trail /readyz.
      const restarted = controller;
      await waitUntil(() => restarted.lines().some((line) => line['msg'] === 'ready'), 10_000);
      const readyLine = controller.lines().find((line) => line['msg'] === 'ready');
      const since = (type: 'put' | 'delete'): number => [...recKeys.events.values()].filter((list) => list.some((e) => e.type === type && e.at >= stoppedAt)).length;
      restart = {
        pods: created,
        seconds: round(restartSeconds, 1000),
        reconcile_ms: round(Number(readyLine?.['durationMs'] ?? 0)),
        keys_deleted: since('delete'),
        keys_written: since('put'),
      };

      // 4: steady state on the restarted controller (default TTLs and reconcile interval), no churn.
      await sleep(profile.steadySettleMs);
      log(`steady: ${profile.steadySeconds} s without churn at ${created} pods`);
      const etcdMetrics = `${cluster.registry.endpoints[0] ?? ''}/metrics`;
      const metricsUrl = `${controller.metricsUrl}/metrics`;
      const window = await steadyWindow(etcdMetrics, metricsUrl, profile.steadySeconds);
      // Every gauge of the controller at the end of the window (heap spaces, handles), for analysis.
      const dump = process.env['BENCH_STEADY_METRICS_FILE'] ?? '';
      if (dump !== '') {
        const proc = (file: string): string => { try { return readFileSync(`/proc/${restarted.proc.pid}/${file}`, 'utf8'); } catch { return ''; } };
        writeFileSync(dump, `${await fetchText(metricsUrl)}\n# smaps_rollup\n${proc('smaps_rollup')}\n# status\n${proc('status')}`);
      }
      if ((process.env['BENCH_HEAP_SNAPSHOT_DIR'] ?? '') !== '') {
        controller.proc.signal('SIGUSR2');
        await sleep(5000);
      }
      const shipped: SteadyFigures = { registered_keys: await recKeyCount(), ...window };

      // 4a (issue 15): the API server restarts under the controller at rest; its pod watch
      // cannot resume (the new watch cache refuses the old resourceVersion) and it relists.
      log(`expiry relist: restarting the API server under the controller at rest (${created} pods)`);
      expiryRelist = await measureExpiryRelist(cluster, restarted, created, recKeys, profile.settleMs);
      log(`expiry relist: ${expiryRelist.cause}, relisted in ${expiryRelist.seconds} s, CPU ${expiryRelist.cpu_s} s, peak RSS ${expiryRelist.peak_rss_mb} MB, keys deleted / written ${expiryRelist.keys_deleted} / ${expiryRelist.keys_written}`);
      if (expiryRelist.cause === 'none') notes.push('expiry relist: the pod watch resumed after the API server restart without a relist; no relist figures');

      // 4b (issue 15): the same at rest with Node's default V8 settings, on a controller started
      // right after the shipped one stopped (it adopts the lease, as a restart does), given the
      // same time from its start to the window and the same window.
      underTest = undefined;
      await controller.stop();
      controller = undefined;
      // A controller with Node's default V8 settings, started after the previous one stopped,
      // given the same time from its start to the window and the same window; stopped after it.
      const { kubeconfigPath, registry } = cluster;
      const atRestWithNodeDefaults = async (name: string, launcher?: readonly string[]): Promise<Omit<SteadyFigures, 'registered_keys'>> => {
        controller = await startBenchController({
          kubeconfig: kubeconfigPath,
          etcdEndpoints: registry.endpoints,
          extraArgs: recArgs,
          name,
          nodeDefaults: true,
          ...(launcher === undefined ? {} : { launcher }),
        });
        await controller.waitReady(profile.settleMs);
        underTest = controller;
        await sleep(1000 + profile.steadySettleMs);
        const figures = await steadyWindow(etcdMetrics, `${controller.metricsUrl}/metrics`, profile.steadySeconds);
        underTest = undefined;
        await controller.stop();
        controller = undefined;
        return figures;
      };
      log(`steady: ${profile.steadySeconds} s without churn at ${created} pods, with Node's default V8 settings`);
      const defaults = await atRestWithNodeDefaults('etcd-registrar-node-defaults');
      log(`steady: shipped (${controllerNodeOptions()}) ${shipped.rss_mb} MB RSS, ${shipped.cpu_percent} % CPU; Node's defaults ${defaults.rss_mb} MB RSS, ${defaults.cpu_percent} % CPU`);

      // 4c (issue 15): Node's defaults once more, under the chart's memory limit, as in a pod.
      const limitMb = chartMemoryLimitMb();
      const limit = memoryLimit(limitMb, `etcd-registrar-bench-${process.pid}`);
      let inLimit: SteadyResult['node_defaults_in_limit'];
      if (typeof limit === 'string') {
        notes.push(`steady: Node's defaults under the chart's ${limitMb} MiB limit not measured: ${limit}`);
      } else {
        log(`steady: ${profile.steadySeconds} s without churn at ${created} pods, with Node's defaults under a ${limitMb} MiB memory limit`);
        try {
          const figures = await atRestWithNodeDefaults('etcd-registrar-node-defaults-in-limit', limit.launcher);
          inLimit = { registered_keys: await recKeyCount(), ...figures, node_options: '', memory_limit_mb: limitMb };
          log(`steady: Node's defaults under ${limitMb} MiB: ${figures.rss_mb} MB RSS, ${figures.cpu_percent} % CPU`);
        } finally {
          limit.remove();
        }
      }
      steady = {
        ...shipped,
        node_defaults: { registered_keys: await recKeyCount(), ...defaults, node_options: '' },
        ...(inLimit === undefined ? {} : { node_defaults_in_limit: inLimit }),
      };

      // 7 (issue 15): a full list of the pods present, per content type, each in a fresh child
      // process (bench/intake-child.ts), with no controller running.
      const relists: Partial<Record<KubeContentType, RelistResult>> = {};
      for (const contentType of ['json', 'protobuf'] as const) {
        log(`relist (${contentType}): listing the ${created} pods of ${REC_NAMESPACE} in a fresh process`);
        const r = await runChild({ mode: 'list', method: methodOf(contentType), kubeconfig: cluster.kubeconfigPath, namespace: REC_NAMESPACE, rv: '', events: 0, reps: 1 });
        const sample = r.samples[0];
        relists[contentType] = {
          content_type: contentType,
          items: r.items ?? 0,
          seconds: round((sample?.ms ?? 0) / 1000, 1000),
          cpu_s: round((sample?.cpuMs ?? 0) / 1000, 1000),
          peak_rss_mb: round(r.maxRssMb),
          baseline_rss_mb: round(r.rssBeforeMb),
          heap_used_after_gc_mb: round(r.heapUsedMb),
          gc_ms: round(r.gcMs),
        };
        log(`relist (${contentType}): ${r.items ?? 0} items in ${round((sample?.ms ?? 0) / 1000, 1000)} s, CPU ${round((sample?.cpuMs ?? 0) / 1000, 1000)} s, peak RSS ${round(r.maxRssMb)} MB (baseline ${round(r.rssBeforeMb)} MB)`);
      }
      if (relists.json !== undefined && relists.protobuf !== undefined) relist = { json: relists.json, protobuf: relists.protobuf };
    } finally {
      await recKeys.close();
    }

    const last = latencyRuns.at(-1);
    if (last === undefined) throw new Error('no latency run');
    const os = await import('node:os');
    return {
      size: options.size,
      machine: { cpus: os.availableParallelism(), node: process.version, platform: `${os.platform()} ${os.release()}` },
      controller_node_options: controllerNodeOptions(),
      started_at: new Date(startedAt).toISOString(),
      duration_s: round((Date.now() - startedAt) / 1000),
      registration: last.registration,
      deregistration: last.deregistration,
      latency_runs: latencyRuns,
      burst,
      reconcile,
      restart,
      steady,
      ...(relist === undefined ? {} : { relist }),
      ...(expiryRelist === undefined ? {} : { expiry_relist: expiryRelist }),
      calibration,
      targets,
      load: options.load?.report(),
      notes,
    };
  } finally {
    underTest = undefined;
    paused?.proc.signal('SIGCONT');
    pods?.stop();
    await keys?.close();
    await controller?.stop().catch(() => undefined);
    await cluster?.stop().catch(() => undefined);
  }
}

/** `count` keys without a lease under FOREIGN_PREFIX, in 128-operation transactions, 4 at a time. */
export async function writeForeignKeys(client: Etcd3, count: number): Promise<void> {
  const batches: number[] = [];
  for (let offset = 0; offset < count; offset += 128) batches.push(offset);
  const worker = async (): Promise<void> => {
    for (let offset = batches.shift(); offset !== undefined; offset = batches.shift()) {
      const ops = [];
      for (let i = offset; i < Math.min(count, offset + 128); i++) {
        ops.push(client.put(`${FOREIGN_PREFIX}svc-${i % 50}/10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}-86`).value(`10.0.0.${i & 255}:86`));
      }
      await client.if(`${FOREIGN_PREFIX}none`, 'Create', '==', 0).then(...ops).commit();
    }
  };
  await Promise.all(Array.from({ length: 4 }, worker));
}

/**
 * Pods rec-{from}..rec-{to-1} in REC_NAMESPACE, created on a KWOK node and made Ready by the bench
 * itself (a status update with an IP from 10.245.0.0/16), 32 at a time. KWOK's pod-ready stage only
 * takes Pending pods: whichever of the two gets there first makes the pod Ready. Returns failures.
 */
/**
 * Keeps a deleted pod (deletionTimestamp set, as at a real termination's start) until the bench
 * removes it: an unscheduled pod would otherwise be removed at once, without one.
 */
const HOLD_FINALIZER = 'bench.etcd-registrar.io/hold';

/** Pods no scheduler picks up (so KWOK never touches them), created before the clock starts. */
async function createUnscheduledPods(core: CoreV1Api, names: readonly string[], app: string): Promise<V1Pod[]> {
  const created: V1Pod[] = [];
  await inParallel(names.length, async (i) => {
    const body = podBody(names[i] ?? '', app);
    body.spec = { ...body.spec!, schedulerName: 'bench-none' };
    created[i] = await core.createNamespacedPod({ namespace: NAMESPACE, body });
  });
  return created;
}

/** The settle step's sampling window, and what counts as quiet in it: all of the cluster's processes together under a tenth of a core. */
const SETTLE_WINDOW_MS = 250;
const QUIET_CORES = 0.1;

/**
 * Waits, while the controller is paused, until the cluster's processes are quiet (or `deadline`,
 * epoch ms), so that the burst's window starts from a known state rather than from whatever the
 * 5,000 status updates left behind, a garbage collection of the API server's among them. (A
 * collection that starts in the burst's window, ~1 CPU s of the API server's, can still happen
 * after it; docs/benchmarks.md.)
 */
async function settleBeforeResume(processes: ReadonlyArray<{ readonly name: string; readonly pid: number }>, deadline: number): Promise<{ quiet: boolean; waitedMs: number; last: CpuBudget }> {
  const started = Date.now();
  for (;;) {
    const before = cpuSnapshot();
    await sleep(SETTLE_WINDOW_MS);
    const last = cpuBudget(before, cpuSnapshot(), processes);
    const cluster = processes.reduce((sum, p) => sum + (last.core_s[p.name] ?? 0), 0);
    const quiet = cluster < (QUIET_CORES * SETTLE_WINDOW_MS) / 1000;
    if (quiet || Date.now() + SETTLE_WINDOW_MS > deadline) return { quiet, waitedMs: Date.now() - started, last };
  }
}

/** `count` pods (plain JSON) no scheduler picks up, holding the bench's finalizer, 32 at a time. */
async function createHeldPods(driver: PodDriver, names: readonly string[], app: string): Promise<V1Pod[]> {
  const created: V1Pod[] = [];
  await inParallel(names.length, async (i) => {
    const body = podBody(names[i] ?? '', app);
    body.spec = { ...body.spec!, schedulerName: 'bench-none' };
    body.metadata = { ...body.metadata, finalizers: [HOLD_FINALIZER] };
    created[i] = (await driver.create(NAMESPACE, body)).pod;
  });
  return created;
}

/** Removes the bench's finalizer from deleted pods (the DELETE responses), 32 at a time, so that they go; returns how many kept it. */
async function releasePods(driver: PodDriver, deleted: readonly V1Pod[]): Promise<number> {
  let next = 0;
  let stuck = 0;
  await Promise.all(Array.from({ length: 32 }, async () => {
    for (let i = next++; i < deleted.length; i = next++) {
      const pod = deleted[i];
      const name = pod?.metadata?.name;
      if (pod === undefined || name === undefined) continue;
      let current: V1Pod = pod;
      for (let attempt = 0; ; attempt++) {
        const finalizers = (current.metadata?.finalizers ?? []).filter((f) => f !== HOLD_FINALIZER);
        try {
          await driver.replace(NAMESPACE, name, { ...current, metadata: { ...current.metadata, finalizers } });
          break;
        } catch {
          // A conflict (the pod changed since): read it again and retry; a 404 means it is gone.
          const fresh = await driver.get(NAMESPACE, name).catch(() => undefined);
          if (fresh === undefined) break;
          if (attempt >= 4) {
            stuck++;
            break;
          }
          current = fresh.pod;
        }
      }
    }
  }));
  return stuck;
}

/** A Running pod status with an IP on the bench's host and these conditions True. */
function runningAndReady(ip: string, now: Date, conditions: readonly string[]): V1PodStatus {
  return {
    phase: 'Running',
    podIP: ip,
    podIPs: [{ ip }],
    hostIP: '10.243.0.10',
    hostIPs: [{ ip: '10.243.0.10' }],
    startTime: now,
    conditions: conditions.map((type) => ({ type, status: 'True', lastTransitionTime: now })),
  };
}

/**
 * Sets a pod Running and Ready with an IP in one status update, as a kubelet's last step would
 * (with the container status a kubelet reports, so that the event is as large as a real one).
 */
export async function setReady(core: CoreV1Api, pod: V1Pod | undefined, ip: string, namespace = NAMESPACE): Promise<V1Pod> {
  const name = pod?.metadata?.name;
  if (pod === undefined || name === undefined) throw new Error('pod was not created');
  return core.replaceNamespacedPodStatus({ name, namespace, body: withReadyStatus(pod, ip, new Date()) });
}

/** The pod with the status a kubelet's last update gives a Running, Ready pod (set in place). */
export function withReadyStatus(pod: V1Pod, ip: string, now: Date): V1Pod {
  const name = pod.metadata?.name ?? '';
  pod.status = {
    ...runningAndReady(ip, now, ['PodReadyToStartContainers', 'Initialized', 'ContainersReady', 'Ready', 'PodScheduled']),
    qosClass: 'BestEffort',
    containerStatuses: [{
      name: 'app',
      image: 'bench:1',
      imageID: 'docker-pullable://bench@sha256:0000000000000000000000000000000000000000000000000000000000000000',
      containerID: `containerd://${name.padEnd(64, '0').slice(0, 64)}`,
      ready: true,
      started: true,
      restartCount: 0,
      state: { running: { startedAt: now } },
    }],
  };
  return pod;
}

export async function createReadyPods(core: CoreV1Api, from: number, to: number): Promise<number> {
  let next = from;
  let failures = 0;
  const one = async (i: number): Promise<void> => {
    const name = `rec-${i}`;
    const body = podBody(name, 'rec');
    body.metadata = { ...body.metadata, namespace: REC_NAMESPACE, annotations: { ...ANNOTATIONS, 'etcd-registrar.io/service': 'rec' } };
    body.spec = { ...body.spec!, nodeName: `kwok-node-${i % 3}` };
    let pod = await core.createNamespacedPod({ namespace: REC_NAMESPACE, body });
    const ip = `10.245.${(i >> 8) & 255}.${i & 255}`;
    const now = new Date();
    for (let attempt = 0; attempt < 5; attempt++) {
      if (pod.status?.conditions?.some((c) => c.type === 'Ready' && c.status === 'True')) return;
      pod.status = runningAndReady(ip, now, ['PodScheduled', 'Initialized', 'ContainersReady', 'Ready']);
      try {
        await core.replaceNamespacedPodStatus({ name, namespace: REC_NAMESPACE, body: pod });
        return;
      } catch {
        // Conflict: KWOK updated it meanwhile (perhaps to Ready): look again.
        pod = await core.readNamespacedPod({ name, namespace: REC_NAMESPACE });
      }
    }
    throw new Error(`${name}: not Ready after 5 attempts`);
  };
  const worker = async (): Promise<void> => {
    for (let i = next++; i < to; i = next++) await one(i).catch(() => { failures++; });
  };
  await Promise.all(Array.from({ length: 32 }, worker));
  return failures;
}

/**
 * The controller at rest over `seconds`: etcd requests and stream messages per second (the
 * etcd server's gRPC counters; the two metric scrapes are HTTP, not gRPC, so not in them), its
 * CPU over the window and its memory at the end.
 */
async function steadyWindow(etcdMetrics: string, controllerMetrics: string, seconds: number): Promise<Omit<SteadyFigures, 'registered_keys'>> {
  const sample = async (): Promise<{ at: number; handled: number; msgs: number; cpu: number; rss: number; heap: number }> => {
    const [etcdText, ctl] = await Promise.all([fetchText(etcdMetrics), fetchText(controllerMetrics)]);
    return {
      at: Date.now(),
      handled: metricSum(etcdText, 'grpc_server_handled_total') ?? 0,
      msgs: metricSum(etcdText, 'grpc_server_msg_received_total') ?? 0,
      cpu: metricSum(ctl, 'etcd_registrar_process_cpu_seconds_total') ?? 0,
      rss: metricSum(ctl, 'etcd_registrar_process_resident_memory_bytes') ?? 0,
      heap: metricSum(ctl, 'etcd_registrar_nodejs_heap_size_used_bytes') ?? 0,
    };
  };
  const before = await sample();
  await sleep(seconds * 1000);
  const after = await sample();
  const window = (after.at - before.at) / 1000;
  return {
    window_seconds: round(window, 100),
    etcd_requests_per_s: round((after.handled - before.handled) / window, 100),
    etcd_stream_messages_per_s: round((after.msgs - before.msgs) / window, 100),
    cpu_percent: round(((after.cpu - before.cpu) / window) * 100, 100),
    rss_mb: round(after.rss / 1024 / 1024),
    heap_used_mb: round(after.heap / 1024 / 1024),
  };
}

/** Mean duration of the controller's next `wanted` periodic full reconciles, and its memory after them. */
async function measureReconciles(controller: ControllerProcess, etcd: Etcd3, pods: number, keys: number, wanted: number, timeoutMs: number): Promise<ReconcileResult> {
  const read = async (): Promise<{ sum: number; count: number; rss: number; heap: number }> => {
    const text = await fetchText(`${controller.metricsUrl}/metrics`);
    return {
      sum: metricSum(text, 'etcd_registrar_reconcile_duration_seconds_sum') ?? 0,
      count: metricSum(text, 'etcd_registrar_reconcile_duration_seconds_count') ?? 0,
      rss: metricSum(text, 'etcd_registrar_process_resident_memory_bytes') ?? 0,
      heap: metricSum(text, 'etcd_registrar_nodejs_heap_size_used_bytes') ?? 0,
    };
  };
  // Start at a reconcile boundary, after the one that may have overlapped the registrations.
  let now = await read();
  const first = now.count;
  await waitUntil(() => now.count > first, timeoutMs, async () => { now = await read(); });
  const before = now;
  const cpuBefore = procCpuSeconds(controller.proc.pid);
  await waitUntil(() => now.count >= before.count + wanted, timeoutMs, async () => { now = await read(); });
  const cpuSeconds = procCpuSeconds(controller.proc.pid) - cpuBefore;
  const count = now.count - before.count;
  const total = await etcd.getAll().prefix('/').count();
  const round = (x: number, d = 10): number => Math.round(x * d) / d;
  return {
    pods,
    keys,
    foreign_keys: total - keys,
    ms: count > 0 ? round(((now.sum - before.sum) / count) * 1000) : 0,
    cpu_ms: count > 0 ? round((cpuSeconds / count) * 1000) : 0,
    reconciles: count,
    rss_mb: round(now.rss / 1024 / 1024),
    heap_used_mb: round(now.heap / 1024 / 1024),
  };
}

/** The controller's relist after an API server restart (ExpiryRelistResult). */
async function measureExpiryRelist(cluster: Cluster, controller: ControllerProcess, pods: number, keys: KeyObserver, timeoutMs: number): Promise<ExpiryRelistResult> {
  const pid = controller.proc.pid;
  // Only what the controller logs from here on: parsing its whole log (a line per registration,
  // 50,000 of them in the scale run) ten times a second would take the CPU it is measured on.
  const logFrom = statSync(controller.logPath).size;
  const restartedAt = preciseNow();
  const cpuBefore = procCpuSeconds(pid);
  let peakRss = rssMb(pid);
  const sampler = setInterval(() => { peakRss = Math.max(peakRss, rssMb(pid)); }, 100);
  try {
    await cluster.restartApiServer();
    const since = (): Array<Record<string, unknown>> => parseJsonLines(logSince(controller.logPath, logFrom));
    const ended = (): Record<string, unknown> | undefined => since().find((line) => /^pod watch (expired \(410\)|failed); relisting$/.test(String(line['msg'])));
    // The watch either cannot resume (410 or an error: a relist follows) or resumes; give it the
    // watch's reconnect time, then wait for the relist to finish.
    await waitUntil(() => ended() !== undefined, 30_000);
    const end = ended();
    if (end === undefined) return { pods, cause: 'none', seconds: 0, cpu_s: 0, peak_rss_mb: round(peakRss), keys_deleted: 0, keys_written: 0 };
    const endIndex = since().indexOf(end);
    const listed = (): Record<string, unknown> | undefined => since().slice(endIndex + 1).find((line) => line['msg'] === 'pods listed');
    await waitUntil(() => listed() !== undefined, timeoutMs);
    // The controller plans the relist's (unchanged) pods right after: let it finish that too.
    await sleep(1000);
    const done = listed();
    const at = (line: Record<string, unknown> | undefined): number => Date.parse(String(line?.['time'] ?? ''));
    // While the API server was down, list attempts failed and were retried after a backoff: the
    // relist proper started after the last one's.
    const retried = since().slice(endIndex + 1).filter((line) => line['msg'] === 'pod list failed; retrying' && (done === undefined || at(line) <= at(done))).at(-1) ?? end;
    const cpu = procCpuSeconds(pid) - cpuBefore;
    const changed = (type: 'put' | 'delete'): number => [...keys.events.values()].filter((list) => list.some((e) => e.type === type && e.at >= restartedAt)).length;
    return {
      pods,
      cause: String(end['msg']).includes('410') ? 'gone' : 'error',
      seconds: done === undefined ? 0 : round((at(done) - at(retried) - Number(retried['delayMs'] ?? 0)) / 1000, 1000),
      cpu_s: round(cpu, 100),
      peak_rss_mb: round(peakRss),
      keys_deleted: changed('delete'),
      keys_written: changed('put'),
    };
  } finally {
    clearInterval(sampler);
  }
}

/** The text a file gained after its first `offset` bytes. */
function logSince(path: string, offset: number): string {
  const fd = openSync(path, 'r');
  try {
    const length = Math.max(0, fstatSync(fd).size - offset);
    const buf = Buffer.alloc(length);
    readSync(fd, buf, 0, length, offset);
    return buf.toString('utf8');
  } finally {
    closeSync(fd);
  }
}

/** A process's resident memory in MB, from /proc; 0 when it has gone. */
export function rssMb(pid: number): number {
  try {
    return Number(/^VmRSS:\s+(\d+)/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  } catch {
    return 0;
  }
}

/** CPU seconds (user + system) of a process so far, from /proc (Linux); 0 when unavailable. */
export function procCpuSeconds(pid: number): number {
  try {
    // Fields after the command name (which may contain spaces): state is field 3, utime 14, stime 15.
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    return Number.isFinite(ticks) ? ticks / CLOCK_TICKS : 0;
  } catch {
    return 0;
  }
}
// USER_HZ: 100 on every mainstream Linux architecture.
const CLOCK_TICKS = 100;

/** The physical limit: `count` keys written in 128-operation transactions, one after another. */
async function rawWriter(client: Etcd3, count: number): Promise<number> {
  const started = performance.now();
  for (let offset = 0; offset < count; offset += 128) {
    const ops = [];
    for (let i = offset; i < Math.min(count, offset + 128); i++) {
      const ip = `10.250.${Math.floor(i / 256)}.${i % 256}`;
      ops.push(client.put(`${RAW_PREFIX}${ip}-86`).value(`${ip}:86`));
    }
    await client.if(`${RAW_PREFIX}${offset}`, 'Create', '==', 0).then(...ops).commit();
  }
  const seconds = (performance.now() - started) / 1000;
  await client.delete().prefix(RAW_PREFIX).exec();
  return seconds > 0 ? count / seconds : 0;
}

/**
 * The raw etcd write path at `rate`: `count` guarded single-key transactions (put with a lease if
 * the key does not exist, as a registration), then as many deletes, paced, each timed from sending
 * to its response and to its revision's arrival on a watch of the bench's.
 */
async function rawTxnLatency(client: Etcd3, endpoints: readonly string[], count: number, rate: number): Promise<{ summary: RawEtcd; putToWatch: number[]; deleteToWatch: number[] }> {
  const watch = new KeyObserver(endpoints);
  await watch.start(RAW_PREFIX);
  const lease = client.lease(60, { autoKeepAlive: false });
  try {
    await lease.grant();
    const keyOfRaw = (i: number): string => `${RAW_PREFIX}lat-${i}`;
    const phase = async (type: 'put' | 'delete'): Promise<{ txn: number[]; toWatch: number[] }> => {
      const sent: number[] = [];
      const txn: number[] = [];
      const failures = await paced(count, rate, async (i) => {
        const key = keyOfRaw(i);
        const op = type === 'put'
          ? client.if(key, 'Create', '==', 0).then(lease.put(key).value(`10.0.0.1:${i}`))
          : client.if(key, 'Create', '>', 0).then(client.delete().key(key));
        const at = preciseNow();
        sent[i] = at;
        await op.commit();
        txn[i] = preciseNow() - at;
      });
      if (failures > 0) throw new Error(`calibration: ${failures} raw ${type} txns failed`);
      const arrival = (i: number): number | undefined => watch.firstEvent(keyOfRaw(i), type, 0)?.at;
      await waitUntil(() => Array.from({ length: count }, (_, i) => arrival(i)).every((a) => a !== undefined), 30_000);
      const toWatch = Array.from({ length: count }, (_, i) => (arrival(i) ?? NaN) - (sent[i] ?? NaN)).filter((v) => Number.isFinite(v));
      return { txn, toWatch };
    };
    const put = await phase('put');
    const del = await phase('delete');
    return {
      summary: { rate, put_txn: quantiles(put.txn), delete_txn: quantiles(del.txn), put_to_watch: quantiles(put.toWatch), delete_to_watch: quantiles(del.toWatch) },
      putToWatch: put.toWatch,
      deleteToWatch: del.toWatch,
    };
  } finally {
    await lease.revoke().catch(() => undefined);
    await watch.close();
  }
}
