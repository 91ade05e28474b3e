// Per-transition decomposition of a latency run: where each registration's or deregistration's
// time went, from the API server's acknowledgement of the bench's request (t0) to the arrival of
// the etcd revision on the bench's own etcd watch (t1), with the controller's stage times
// (GET /debug/latency) correlated by key and etcd revision, and two references measured in the
// same run: an idle watcher process (the intake floor) and the bench's in-process pod watch
// (the observer).
import type { ChangeKind, ChangeTiming as ControllerTiming } from '../src/controller/latency.ts';
import { percentile } from './stats.ts';

/** One change the controller committed, as GET /debug/latency reports it. */
export type { ChangeKind, ControllerTiming };

/** One transition the bench caused (or, for KWOK's Ready, observed). Times are epoch ms. */
export interface Transition {
  readonly key: string;
  /** The API server's acknowledgement of the bench's request (or the observer's first sight, see `t0`). */
  readonly t0: number;
  /** resourceVersion of the object the change produced (the acknowledgement's, or the observed event's). */
  readonly resourceVersion: string;
}

/** When the etcd watch saw the key change, and at which revision. */
export interface KeyArrival {
  readonly at: number;
  readonly revision: string;
}

export interface Quantiles {
  readonly p50_ms: number;
  readonly p95_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  readonly samples: number;
}

/**
 * The stages, in order, and what they measure (all ms):
 * - e2e: t0 -> the etcd watch saw the revision (t1);
 * - api_to_controller: t0 -> the controller's pod source received the watch event (may be < 0:
 *   the watch event can beat the HTTP response to the bench);
 * - intake: received -> key enqueued; queue: -> taken by a worker; plan: -> txn sent;
 *   txn: -> committed (the apply() call returned); commit_to_watch: -> t1;
 * - controller: received -> committed (the controller-attributable latency);
 * - intake_floor: t0 -> an idle watcher process received the same event (the platform's floor);
 * - observer_lag: t0 -> the bench's in-process pod watch received it.
 */
export const STAGES = ['e2e', 'api_to_controller', 'intake', 'queue', 'plan', 'txn', 'commit_to_watch', 'controller', 'intake_floor', 'observer_lag'] as const;
export type StageName = (typeof STAGES)[number];

/** Stages that add up to e2e (api_to_controller + ... + commit_to_watch). */
const PATH: readonly StageName[] = ['api_to_controller', 'intake', 'queue', 'plan', 'txn', 'commit_to_watch'];

export interface Decomposition {
  /** What t0 is: the API server's acknowledgement of the bench's request, or the observer's first sight (KWOK's Ready). */
  readonly t0: 'api-ack' | 'observer';
  readonly transitions: number;
  /** Transitions whose key change the etcd watch never saw. */
  readonly missing: number;
  /** Transitions without a controller timing for their revision (e.g. written by a full reconcile). */
  readonly untraced: number;
  readonly stages: Record<StageName, Quantiles>;
  /** The slowest 1 % by e2e (at least one): mean ms per stage of the path. */
  readonly p99_breakdown: { readonly samples: number; readonly e2e_ms: number } & Partial<Record<StageName, number>>;
  /** Transitions the bench's own pod watch saw only after etcd's (the old "counted as 0 ms"). */
  readonly observer_after_etcd: number;
}

const round = (x: number): number => Math.round(x * 10) / 10;

export function quantiles(values: readonly number[]): Quantiles {
  const sorted = [...values].sort((a, b) => a - b);
  return {
    p50_ms: round(percentile(sorted, 50)),
    p95_ms: round(percentile(sorted, 95)),
    p99_ms: round(percentile(sorted, 99)),
    max_ms: round(sorted.at(-1) ?? 0),
    samples: sorted.length,
  };
}

export function decompose(
  kind: ChangeKind,
  t0: 'api-ack' | 'observer',
  transitions: readonly Transition[],
  arrivals: (key: string) => KeyArrival | undefined,
  timings: readonly ControllerTiming[],
  probe: ReadonlyMap<string, number>,
  observer: ReadonlyMap<string, number>,
): { decomposition: Decomposition; e2e: number[]; starts: number[]; samples: Record<StageName, number[]>; rows: Array<{ key: string; t0: number } & Partial<Record<StageName, number>>> } {
  const byRevision = new Map<string, ControllerTiming>();
  const byKey = new Map<string, ControllerTiming>();
  for (const t of timings) {
    if (t.change !== kind) continue;
    byRevision.set(`${t.key}@${t.revision}`, t);
    byKey.set(t.key, t);
  }
  const values = Object.fromEntries(STAGES.map((s) => [s, [] as number[]])) as Record<StageName, number[]>;
  const rows: Array<Partial<Record<StageName, number>> & { e2e: number; key: string; t0: number }> = [];
  const starts: number[] = [];
  let missing = 0;
  let untraced = 0;
  let observerAfterEtcd = 0;
  for (const tr of transitions) {
    const arrival = arrivals(tr.key);
    if (arrival === undefined) {
      missing++;
      continue;
    }
    const row: Partial<Record<StageName, number>> & { e2e: number; key: string; t0: number } = { key: tr.key, t0: tr.t0, e2e: arrival.at - tr.t0 };
    const c = byRevision.get(`${tr.key}@${arrival.revision}`) ?? byKey.get(tr.key);
    if (c === undefined) untraced++;
    else {
      row.api_to_controller = c.receivedAt - tr.t0;
      row.intake = c.enqueuedAt - c.receivedAt;
      row.queue = c.takenAt - c.enqueuedAt;
      row.plan = c.sentAt - c.takenAt;
      row.txn = c.committedAt - c.sentAt;
      row.commit_to_watch = arrival.at - c.committedAt;
      row.controller = c.committedAt - c.receivedAt;
    }
    const floor = probe.get(tr.resourceVersion);
    if (floor !== undefined) row.intake_floor = floor - tr.t0;
    const seen = observer.get(tr.resourceVersion);
    if (seen !== undefined) {
      row.observer_lag = seen - tr.t0;
      if (seen > arrival.at) observerAfterEtcd++;
    }
    for (const stage of STAGES) {
      const v = row[stage];
      if (v !== undefined) values[stage].push(v);
    }
    rows.push(row);
    starts.push(tr.t0);
  }
  const stages = Object.fromEntries(STAGES.map((s) => [s, quantiles(values[s])])) as Record<StageName, Quantiles>;
  const slowest = [...rows].sort((a, b) => b.e2e - a.e2e).slice(0, Math.max(1, Math.ceil(rows.length / 100)));
  const breakdown: { samples: number; e2e_ms: number } & Partial<Record<StageName, number>> = {
    samples: slowest.length,
    e2e_ms: round(mean(slowest.map((r) => r.e2e))),
  };
  for (const stage of [...PATH, 'controller', 'intake_floor', 'observer_lag'] as const) {
    const vs = slowest.map((r) => r[stage]).filter((v): v is number => v !== undefined);
    if (vs.length > 0) breakdown[stage] = round(mean(vs));
  }
  return {
    decomposition: { t0, transitions: transitions.length, missing, untraced, stages, p99_breakdown: breakdown, observer_after_etcd: observerAfterEtcd },
    e2e: rows.map((r) => r.e2e),
    starts,
    samples: values,
    rows,
  };
}

function mean(values: readonly number[]): number {
  return values.length === 0 ? 0 : values.reduce((a, b) => a + b, 0) / values.length;
}

/** The platform floor of e2e: each intake-floor sample plus a raw etcd txn-to-watch sample (paired in order), p99. */
export function floorP99(intakeFloor: readonly number[], rawToWatch: readonly number[]): number {
  if (intakeFloor.length === 0 || rawToWatch.length === 0) return 0;
  return round(percentile(intakeFloor.map((v, i) => v + (rawToWatch[i % rawToWatch.length] ?? 0)).sort((a, b) => a - b), 99));
}

/** One line per kind: the p99 and the mean of each stage over the slowest 1 %. */
export function describeBreakdown(label: string, d: Decomposition): string {
  const b = d.p99_breakdown;
  const part = (stage: StageName, name: string): string => (b[stage] === undefined ? '' : ` ${name} ${b[stage]}`);
  const q = (stage: StageName): string => `${d.stages[stage].p50_ms}/${d.stages[stage].p99_ms}`;
  return `${label} p50/p99 ms: e2e ${q('e2e')}, API→controller ${q('api_to_controller')}, controller ${q('controller')}, intake floor ${q('intake_floor')}; slowest ${b.samples} (mean ${b.e2e_ms} ms):`
    + `${part('api_to_controller', 'API→controller')}${part('intake', '| enqueue')}${part('queue', '| queue')}${part('plan', '| plan')}${part('txn', '| txn')}${part('commit_to_watch', '| commit→etcd watch')}`
    + `${part('intake_floor', '(idle watcher')}${b.intake_floor === undefined ? '' : ')'}`
    + ` [${d.transitions} transitions, ${d.missing} missing, ${d.untraced} untraced; observer ${d.stages.observer_lag.p99_ms} ms p99, after etcd ${d.observer_after_etcd}]`;
}

/** Histograms in Prometheus text: the q-quantile (bucket upper bound) of the observations between two scrapes. */
export function histogramQuantile(before: string, after: string, name: string, labels: Readonly<Record<string, string>>, q: number): number | undefined {
  const buckets = (text: string): Map<string, number> => {
    const out = new Map<string, number>();
    for (const line of text.split('\n')) {
      if (!line.startsWith(`${name}_bucket{`)) continue;
      const close = line.lastIndexOf('}');
      const labelText = line.slice(name.length + 8, close);
      if (!Object.entries(labels).every(([k, v]) => labelText.includes(`${k}="${v}"`))) continue;
      const le = /le="([^"]+)"/.exec(labelText)?.[1];
      if (le !== undefined) out.set(le, Number(line.slice(close + 2)));
    }
    return out;
  };
  const b0 = buckets(before);
  const b1 = buckets(after);
  const rows = [...b1].map(([le, count]) => [le === '+Inf' ? Infinity : Number(le), count - (b0.get(le) ?? 0)] as const).sort((a, b) => a[0] - b[0]);
  const total = rows.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const found = rows.find(([, count]) => count >= q * total);
  return found === undefined ? undefined : found[0];
}
