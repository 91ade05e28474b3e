// Ranges over several bench runs: the table docs/benchmarks.md publishes. A single run's tail is
// noise on a shared 2-core machine; a figure worth printing is the span of several runs.
//
//   node bench/ranges.ts run-1.json run-2.json ... [--rate 200]
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import type { BenchResult, LatencyRun } from './bench.ts';
import type { StageName } from './decompose.ts';

type Direction = 'registration' | 'deregistration';

/** Three significant figures at most below 100, whole numbers above. */
function figure(n: number): string {
  if (Math.abs(n) >= 100) return String(Math.round(n));
  return String(Number(n.toPrecision(Math.abs(n) >= 1 ? 3 : 2)));
}

/** "a" when every run gave a, otherwise "min-max" ("min to max" when the range holds a negative). */
export function span(values: readonly number[]): string {
  if (values.length === 0) return '-';
  const lo = Math.min(...values);
  const hi = Math.max(...values);
  if (lo === hi) return figure(lo);
  return lo < 0 ? `${figure(lo)} to ${figure(hi)}` : `${figure(lo)}-${figure(hi)}`;
}

function runAt(result: BenchResult, rate: number): LatencyRun {
  const run = result.latency_runs.find((r) => r.target_rate === rate);
  if (run === undefined) throw new Error(`a run started at ${result.started_at} has no latency run at ${rate}/s`);
  return run;
}

/** Markdown rows (figure | registration | deregistration) of the latency runs at `rate`, as ranges over `results`. */
export function latencyRanges(results: readonly BenchResult[], rate: number): string[] {
  if (results.length === 0) throw new Error('no bench results');
  const runs = results.map((r) => runAt(r, rate));
  const stage = (d: Direction, name: StageName, q: 'p50_ms' | 'p95_ms' | 'p99_ms' | 'max_ms'): string =>
    span(runs.map((r) => r.decomposition[d].stages[name][q]));
  const quartet = (d: Direction, name: StageName): string =>
    (['p50_ms', 'p95_ms', 'p99_ms', 'max_ms'] as const).map((q) => stage(d, name, q)).join(' / ');
  const breakdown = (d: Direction): string => {
    const parts: readonly StageName[] = ['api_to_controller', 'queue', 'txn', 'commit_to_watch'];
    return parts.map((p) => `${p} ${span(runs.map((r) => r.decomposition[d].p99_breakdown?.[p] ?? Number.NaN))}`).join(', ');
  };
  const raw = (d: Direction): string => {
    const txn = results.map((r) => (d === 'registration' ? r.calibration?.raw_etcd.put_txn.p99_ms : r.calibration?.raw_etcd.delete_txn.p99_ms) ?? Number.NaN);
    return `${span(txn)} / ${span(results.map((r) => r.calibration?.floor_p99_ms[d] ?? Number.NaN))}`;
  };
  const met = (d: Direction, kind: 'controller' | 'e2e'): string => {
    const checks = results.map((r) => r.targets?.[kind][d]);
    const kept = checks.filter((c) => c?.met === true).length;
    return `met in ${kept} of ${checks.length} runs`;
  };
  const row = (figure: string, cell: (d: Direction) => string): string => `| ${figure} | ${cell('registration')} | ${cell('deregistration')} |`;
  return [
    `| figure @${rate}/s, ranges over ${results.length} runs | registration | deregistration |`,
    '|---|---|---|',
    row('end to end (API ack → etcd watch): p50 / p95 / p99 / max (ms)', (d) => quartet(d, 'e2e')),
    row('controller (event received → committed): p50 / p99 (ms)', (d) => `${stage(d, 'controller', 'p50_ms')} / ${stage(d, 'controller', 'p99_ms')}`),
    row('controller target p99 ≤ 20 ms', (d) => met(d, 'controller')),
    row('API ack → controller received: p50 / p99 (ms)', (d) => `${stage(d, 'api_to_controller', 'p50_ms')} / ${stage(d, 'api_to_controller', 'p99_ms')}`),
    row('intake floor (idle watcher): p50 / p99 (ms)', (d) => `${stage(d, 'intake_floor', 'p50_ms')} / ${stage(d, 'intake_floor', 'p99_ms')}`),
    row('committed → etcd watch: p99 (ms)', (d) => stage(d, 'commit_to_watch', 'p99_ms')),
    row('where the p99 goes (mean ms of the slowest 1 %)', breakdown),
    row('raw etcd txn p99 / e2e floor p99 (ms)', raw),
    row('end-to-end target (≤ 50 ms or ≤ floor + 20 ms)', (d) => met(d, 'e2e')),
    row('bench\'s own pod watch lag p99 (ms)', (d) => stage(d, 'observer_lag', 'p99_ms')),
    row('missing transitions', (d) => span(runs.map((r) => r.decomposition[d].missing))),
    `| controller over the run: event-loop delay p99 / max (ms), GC s, watch restarts | ${span(runs.map((r) => r.controller.event_loop_delay_p99_ms))} / ${span(runs.map((r) => r.controller.event_loop_delay_max_ms))}, ${span(runs.map((r) => r.controller.gc_seconds))}, ${span(runs.map((r) => r.controller.watch_restarts))} | |`,
  ];
}

/** The other figures (burst, reconcile, restart, at rest) as ranges. */
export function otherRanges(results: readonly BenchResult[]): string[] {
  const of = (f: (r: BenchResult) => number): string => span(results.map(f));
  const largest = (r: BenchResult): BenchResult['reconcile'][number] | undefined => r.reconcile.at(-1);
  return [
    `| figure, ranges over ${results.length} runs | value |`,
    '|---|---|',
    `| burst of ${span(results.map((r) => r.burst.pods))} pods: last Ready → last key (s), keys/s | ${of((r) => r.burst.seconds)}, ${of((r) => r.burst.keys_per_s)} |`,
    `| burst: controller CPU s, ratio to the intake floor | ${of((r) => r.burst.controller_cpu_s)}, ${of((r) => r.burst.ratio_to_intake_floor)} |`,
    `| reconcile of ${span(results.map((r) => largest(r)?.pods ?? Number.NaN))} pods: ms (CPU ms), RSS MB | ${of((r) => largest(r)?.ms ?? Number.NaN)} (${of((r) => largest(r)?.cpu_ms ?? Number.NaN)}), ${of((r) => largest(r)?.rss_mb ?? Number.NaN)} |`,
    `| restart with ${span(results.map((r) => r.restart.pods))} pods: s to ready, keys deleted / written | ${of((r) => r.restart.seconds)}, ${of((r) => r.restart.keys_deleted)} / ${of((r) => r.restart.keys_written)} |`,
    `| at rest with ${span(results.map((r) => r.steady.registered_keys))} keys: CPU %, RSS MB, etcd requests/s | ${of((r) => r.steady.cpu_percent)}, ${of((r) => r.steady.rss_mb)}, ${of((r) => r.steady.etcd_requests_per_s)} |`,
    ...(results.every((r) => r.expiry_relist !== undefined)
      ? [`| relist after a watch expiry, ${span(results.map((r) => r.expiry_relist?.pods ?? Number.NaN))} pods: s, CPU s, peak RSS MB, keys deleted / written | ${of((r) => r.expiry_relist?.seconds ?? Number.NaN)}, ${of((r) => r.expiry_relist?.cpu_s ?? Number.NaN)}, ${of((r) => r.expiry_relist?.peak_rss_mb ?? Number.NaN)}, ${of((r) => r.expiry_relist?.keys_deleted ?? Number.NaN)} / ${of((r) => r.expiry_relist?.keys_written ?? Number.NaN)} |`]
      : []),
  ];
}

/**
 * Issue 15's comparisons as ranges over the runs that hold them (empty when none does): the burst
 * and a full relist, JSON vs protobuf, and the steady state as shipped vs with Node's defaults.
 */
export function contentTypeRanges(results: readonly BenchResult[]): string[] {
  const runs = results.filter((r) => r.burst.json !== undefined && r.burst.protobuf !== undefined);
  if (runs.length === 0) return [];
  const of = (f: (r: BenchResult) => number | undefined): string => span(runs.map((r) => f(r) ?? Number.NaN));
  // Runs since 2026-12-07 hold the machine's pace beside each burst side: a column when any does.
  const paced = runs.some((r) => r.burst.protobuf?.machine_pace !== undefined);
  const side = (type: 'json' | 'protobuf'): string => {
    const b = (r: BenchResult): NonNullable<BenchResult['burst']['json']> => r.burst[type]!;
    const l = (r: BenchResult): NonNullable<BenchResult['relist']>['json'] | undefined => r.relist?.[type];
    // Over the runs that measured it (a run from before has none).
    const pace = paced ? ` ${span(runs.flatMap((r) => b(r).machine_pace?.median_ms ?? []))} |` : '';
    return `| ${type} | ${of((r) => b(r).keys_per_s)} | ${of((r) => b(r).intake_floor_keys_per_s)} | ${of((r) => b(r).ratio_to_intake_floor)} | ${of((r) => b(r).controller_cpu_s)} | ${of((r) => b(r).replay_mb)} | ${of((r) => l(r)?.seconds)} | ${of((r) => l(r)?.cpu_s)} | ${of((r) => l(r)?.peak_rss_mb)} (${of((r) => l(r)?.baseline_rss_mb)}) |${pace}`;
  };
  const steady = (label: string, f: (r: BenchResult) => BenchResult['steady'] | undefined): string =>
    `| ${label} | ${of((r) => f(r)?.registered_keys)} | ${of((r) => f(r)?.cpu_percent)} | ${of((r) => f(r)?.rss_mb)} | ${of((r) => f(r)?.heap_used_mb)} | ${of((r) => f(r)?.etcd_requests_per_s)} |`;
  return [
    `| content type, ranges over ${runs.length} runs | burst keys/s | intake floor events/s | keys/s ÷ floor | controller CPU s | wire MB | relist of ${of((r) => r.relist?.protobuf.items)} pods: s | relist CPU s | relist peak RSS MB (baseline) |${paced ? ' machine pace ms |' : ''}`,
    `|---|---|---|---|---|---|---|---|---|${paced ? '---|' : ''}`,
    side('json'),
    side('protobuf'),
    '',
    '| at rest, Node settings | keys | CPU % | RSS MB | heap used MB | etcd requests/s |',
    '|---|---|---|---|---|---|',
    steady('as shipped', (r) => r.steady),
    steady("Node's defaults", (r) => r.steady.node_defaults),
    ...(runs.some((r) => r.steady.node_defaults_in_limit !== undefined)
      ? [steady(`Node's defaults, ${of((r) => r.steady.node_defaults_in_limit?.memory_limit_mb)} MiB limit`, (r) => r.steady.node_defaults_in_limit)]
      : []),
  ];
}

/**
 * The scale tiers (issue 15, §3) of runs with more than one reconcile tier: per tier, the full
 * reconcile and the controller's memory; at the largest, the restart, the relist after a watch
 * expiry and the controller at rest (as shipped, Node's defaults, and those under the chart's limit).
 */
export function scaleRanges(results: readonly BenchResult[]): string[] {
  const runs = results.filter((r) => r.reconcile.length > 2);
  if (runs.length === 0) return [];
  const of = (f: (r: BenchResult) => number | undefined): string => span(runs.map((r) => f(r) ?? Number.NaN));
  const tiers = [...new Set(runs.flatMap((r) => r.reconcile.map((t) => t.pods)))].sort((a, b) => a - b);
  const tier = (pods: number) => (r: BenchResult): BenchResult['reconcile'][number] | undefined => r.reconcile.find((t) => t.pods === pods);
  const rest = (label: string, f: (r: BenchResult) => BenchResult['steady'] | undefined): string =>
    `| at rest, ${label}: CPU %, RSS MB, heap used MB | ${of((r) => f(r)?.cpu_percent)}, ${of((r) => f(r)?.rss_mb)}, ${of((r) => f(r)?.heap_used_mb)} |`;
  return [
    `| pods, ranges over ${runs.length} runs | full reconcile ms (CPU ms) | controller RSS MB (heap used MB), reconciling every second |`,
    '|---|---|---|',
    ...tiers.map((pods) => `| ${pods} | ${of((r) => tier(pods)(r)?.ms)} (${of((r) => tier(pods)(r)?.cpu_ms)}) | ${of((r) => tier(pods)(r)?.rss_mb)} (${of((r) => tier(pods)(r)?.heap_used_mb)}) |`),
    '',
    `| at ${of((r) => r.restart.pods)} pods | value |`,
    '|---|---|',
    `| restart: s to ready, first reconcile ms, keys deleted / written | ${of((r) => r.restart.seconds)}, ${of((r) => r.restart.reconcile_ms)}, ${of((r) => r.restart.keys_deleted)} / ${of((r) => r.restart.keys_written)} |`,
    `| relist after a watch expiry: s, CPU s, peak RSS MB, keys deleted / written | ${of((r) => r.expiry_relist?.seconds)}, ${of((r) => r.expiry_relist?.cpu_s)}, ${of((r) => r.expiry_relist?.peak_rss_mb)}, ${of((r) => r.expiry_relist?.keys_deleted)} / ${of((r) => r.expiry_relist?.keys_written)} |`,
    rest('as shipped', (r) => r.steady),
    rest("Node's defaults", (r) => r.steady.node_defaults),
    rest(`Node's defaults under ${of((r) => r.steady.node_defaults_in_limit?.memory_limit_mb)} MiB`, (r) => r.steady.node_defaults_in_limit),
  ];
}

if (import.meta.main) {
  const { values, positionals } = parseArgs({ allowPositionals: true, options: { rate: { type: 'string', default: '200' } } });
  if (positionals.length === 0) {
    process.stderr.write('usage: node bench/ranges.ts RUN.json... [--rate 200]\n');
    process.exit(2);
  }
  const results = positionals.map((file) => JSON.parse(readFileSync(file, 'utf8')) as BenchResult);
  const issue15 = contentTypeRanges(results);
  const scale = scaleRanges(results);
  process.stdout.write(`${[...latencyRanges(results, Number(values.rate)), '', ...otherRanges(results), ...(issue15.length > 0 ? ['', ...issue15] : []), ...(scale.length > 0 ? ['', ...scale] : [])].join('\n')}\n`);
}
