// Prometheus metrics. One Registry per controller instance, so tests can run several.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { CHANGE_KINDS, STAGES, type ChangeKind, type Stage } from '../controller/latency.ts';
import { StageHistogram } from './stage-histogram.ts';

export interface MetricsSources {
  readonly queueDepth: () => number;
  readonly lastKeepaliveAt: () => number | undefined;
  readonly ownedKeys: () => number;
  readonly watchedPods: () => number;
  /** Cumulative counts of the event recorder. */
  readonly events?: () => { readonly sent: number; readonly deduped: number; readonly dropped: number; readonly failed: number };
  /** Cumulative restarts of the pod watch. */
  readonly sourceRestarts?: () => number;
  /** Cumulative pod watches the API server ended cleanly (each resumed without a relist). */
  readonly watchServerClosures?: () => number;
  /** etcd rejects our writes for lack of space (NOSPACE alarm). */
  readonly outOfSpace?: () => boolean;
}

/**
 * How often the event-loop delay (nodejs_eventloop_lag_*) is sampled. prom-client's 10 ms wakes
 * the process 100 times a second: 0.7 % of a core on an idle process, more than the whole
 * controller at rest. Every 100 ms costs 0.1 %; a stall longer than that is always seen, a
 * shorter one when it covers a sample.
 */
const EVENT_LOOP_SAMPLE_MS = 100;
/** prom-client's own sampler, whose gauges are replaced below: once a minute, so it costs nothing. */
const PROM_CLIENT_SAMPLE_MS = 60_000;

/**
 * The event-loop delay gauges prom-client's default metrics define (same names and meaning for
 * dashboards), from a sampler every EVENT_LOOP_SAMPLE_MS. Node records each interval between two
 * samples, so the delay is the interval less the sampling period (prom-client reports the
 * interval itself, which at 100 ms would read as a 100 ms lag on an idle process).
 */
function eventLoopDelayGauges(registry: Registry): void {
  const sampler = monitorEventLoopDelay({ resolution: EVENT_LOOP_SAMPLE_MS });
  sampler.enable();
  const delay = (ns: number): number => Math.max(0, ns / 1e9 - EVENT_LOOP_SAMPLE_MS / 1000);
  const figures: ReadonlyArray<readonly [name: string, help: string, read: () => number]> = [
    ['min', 'The minimum recorded event loop delay.', () => delay(sampler.min)],
    ['max', 'The maximum recorded event loop delay.', () => delay(sampler.max)],
    ['mean', 'The mean of the recorded event loop delays.', () => delay(sampler.mean)],
    ['stddev', 'The standard deviation of the recorded event loop delays.', () => (Number.isNaN(sampler.stddev) ? 0 : sampler.stddev / 1e9)],
    ['p50', 'The 50th percentile of the recorded event loop delays.', () => delay(sampler.percentile(50))],
    ['p90', 'The 90th percentile of the recorded event loop delays.', () => delay(sampler.percentile(90))],
    ['p99', 'The 99th percentile of the recorded event loop delays.', () => delay(sampler.percentile(99))],
  ];
  // Each scrape reads the samples since the last one: the last gauge collected starts afresh.
  const last = figures.at(-1)?.[0];
  for (const [figure, help, read] of figures) {
    const name = `etcd_registrar_nodejs_eventloop_lag_${figure}_seconds`;
    registry.removeSingleMetric(name);
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(sampler.count > 0 ? read() : 0);
        if (figure === last) sampler.reset();
      },
    });
  }
}

export class Metrics {
  readonly registry = new Registry();
  readonly changes = new Counter({
    name: 'etcd_registrar_changes_total',
    help: 'Changes to etcd by action (register, repair, deregister, orphan-delete) and outcome (ok, error, conflict, dry-run)',
    labelNames: ['action', 'outcome'] as const,
    registers: [this.registry],
  });
  readonly skips = new Counter({
    name: 'etcd_registrar_skips_total',
    help: 'Registrations not written, by reason (invalid, foreign-key, refused-delete, not-granted)',
    labelNames: ['reason'] as const,
    registers: [this.registry],
  });
  readonly ungrantedClaims = new Counter({
    name: 'etcd_registrar_ungranted_claims_total',
    help: 'Pods claiming a service their namespace is not granted, by outcome (refused: --service-grants strict; allowed: open)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly invalidPods = new Gauge({
    name: 'etcd_registrar_invalid_pods',
    help: 'Opted-in pods whose annotations are invalid',
    registers: [this.registry],
  });
  readonly orphansRemoved = new Counter({
    name: 'etcd_registrar_orphans_removed_total',
    help: 'Owned keys deleted because no pod wants them',
    registers: [this.registry],
  });
  readonly reconcileDuration = new Histogram({
    name: 'etcd_registrar_reconcile_duration_seconds',
    help: 'Duration of full reconciles',
    buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30],
    registers: [this.registry],
  });
  readonly reconciles = new Counter({
    name: 'etcd_registrar_reconciles_total',
    help: 'Full reconciles by outcome (ok, error, skipped, refused)',
    labelNames: ['outcome'] as const,
    registers: [this.registry],
  });
  readonly deletesRefused = new Counter({
    name: 'etcd_registrar_deletes_refused_total',
    help: 'Deletes held back by the --max-delete-share safety valve',
    registers: [this.registry],
  });
  readonly etcdErrors = new Counter({
    name: 'etcd_registrar_etcd_errors_total',
    help: 'Failed etcd operations by operation',
    labelNames: ['op'] as const,
    registers: [this.registry],
  });
  readonly etcdReads = new Counter({
    name: 'etcd_registrar_etcd_reads_total',
    help: 'Reads of the key space by the reconcile, by scope (full: every key under the root; scoped: the directories that hold our or wanted keys; unchanged: etcd said those directories had not changed since the last read, so they were not read again)',
    labelNames: ['scope'] as const,
    registers: [this.registry],
  });
  readonly changeStages = new StageHistogram<Stage, ChangeKind>({
    name: 'etcd_registrar_change_stage_seconds',
    help: 'Time a change spent in each stage, by stage (intake: watch event received -> key enqueued; queue: -> taken by a worker; plan: -> transaction sent; txn: -> committed; total: received -> committed) and change (registration, deregistration)',
    stages: STAGES,
    changes: CHANGE_KINDS,
    buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
    registers: [this.registry],
  });
  readonly leaseChanges = new Counter({
    name: 'etcd_registrar_lease_changes_total',
    help: 'Times the data lease was lost and replaced by a new one',
    registers: [this.registry],
  });
  readonly leadershipChanges = new Counter({
    name: 'etcd_registrar_leadership_changes_total',
    help: 'Leadership transitions of this replica: elected (also re-elected after stepping down) and lost (stepped down to standby)',
    labelNames: ['event'] as const,
    registers: [this.registry],
  });
  readonly leader = new Gauge({
    name: 'etcd_registrar_leader',
    help: '1 while this replica leads (writes), 0 while it is a standby',
    registers: [this.registry],
  });

  constructor(sources: MetricsSources) {
    collectDefaultMetrics({ register: this.registry, prefix: 'etcd_registrar_', eventLoopMonitoringPrecision: PROM_CLIENT_SAMPLE_MS });
    eventLoopDelayGauges(this.registry);
    const { events, sourceRestarts, watchServerClosures } = sources;
    new Counter({
      name: 'etcd_registrar_events_total',
      help: 'Kubernetes Events on pods by outcome (sent, deduplicated, dropped by rate limits, failed)',
      labelNames: ['outcome'] as const,
      registers: [this.registry],
      collect() {
        if (events === undefined) return;
        const stats = events();
        this.reset();
        this.inc({ outcome: 'sent' }, stats.sent);
        this.inc({ outcome: 'deduplicated' }, stats.deduped);
        this.inc({ outcome: 'dropped' }, stats.dropped);
        this.inc({ outcome: 'failed' }, stats.failed);
      },
    });
    this.#cumulative('etcd_registrar_watch_restarts_total', 'Restarts of the pod list/watch after errors or silence', sourceRestarts);
    this.#cumulative(
      'etcd_registrar_watch_server_closures_total',
      'Pod watches the API server ended cleanly (its timeout, or a watcher it dropped); each resumes from its resourceVersion without a relist',
      watchServerClosures,
    );
    new Gauge({
      name: 'etcd_registrar_registrations',
      help: 'Keys on this owner\'s data lease, as last read or written',
      registers: [this.registry],
      collect() {
        this.set(sources.ownedKeys());
      },
    });
    new Gauge({
      name: 'etcd_registrar_etcd_out_of_space',
      help: '1 while etcd rejects registrations for lack of space (NOSPACE alarm raised), else 0',
      registers: [this.registry],
      collect() {
        this.set(sources.outOfSpace?.() === true ? 1 : 0);
      },
    });
    new Gauge({
      name: 'etcd_registrar_queue_depth',
      help: 'Keys waiting in the work queue',
      registers: [this.registry],
      collect() {
        this.set(sources.queueDepth());
      },
    });
    new Gauge({
      name: 'etcd_registrar_watched_pods',
      help: 'Pods in the informer cache',
      registers: [this.registry],
      collect() {
        this.set(sources.watchedPods());
      },
    });
    new Gauge({
      name: 'etcd_registrar_lease_keepalive_age_seconds',
      help: 'Seconds since the data lease was last renewed (-1 before the first renewal)',
      registers: [this.registry],
      collect() {
        const at = sources.lastKeepaliveAt();
        this.set(at === undefined ? -1 : (Date.now() - at) / 1000);
      },
    });
  }

  /** A counter whose value is a source's running total, read at each scrape (absent source: no sample). */
  #cumulative(name: string, help: string, read: (() => number) | undefined): void {
    new Counter({
      name,
      help,
      registers: [this.registry],
      collect() {
        if (read === undefined) return;
        this.reset();
        this.inc(read());
      },
    });
  }
}
