// The table of ranges over runs that docs/benchmarks.md publishes, on hand-made results.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { BenchResult } from '../../bench/bench.ts';
import { STAGES, type Decomposition } from '../../bench/decompose.ts';
import { contentTypeRanges, latencyRanges, span } from '../../bench/ranges.ts';

test('a range is min-max, a single value when all runs agree, "to" across zero', () => {
  assert.equal(span([3, 1.25, 2]), '1.25-3');
  assert.equal(span([7, 7]), '7');
  assert.equal(span([-2.5, 1]), '-2.5 to 1');
  assert.equal(span([12714.5, 15423]), '12715-15423');
  assert.equal(span([0.0634, 0.39]), '0.063-0.39');
});

function decomposition(p99: number): Decomposition {
  const q = { p50_ms: 1, p95_ms: 2, p99_ms: p99, max_ms: p99 * 2, samples: 100 };
  return {
    t0: 'api-ack', transitions: 100, missing: 0, untraced: 0, observer_after_etcd: 0,
    stages: Object.fromEntries(STAGES.map((s) => [s, q])) as Decomposition['stages'],
    p99_breakdown: { samples: 1, e2e_ms: p99, txn: p99 / 2 },
  };
}

function result(regP99: number, controllerMet: boolean, rate = 200): BenchResult {
  const check = (p99: number, met: boolean): { p99_ms: number; limit_ms: number; met: boolean } => ({ p99_ms: p99, limit_ms: 20, met });
  return {
    started_at: `run with p99 ${regP99}`,
    latency_runs: [{
      target_rate: rate,
      decomposition: { registration: decomposition(regP99), deregistration: decomposition(4) },
      controller: { event_loop_delay_p99_ms: 10, event_loop_delay_max_ms: 20, gc_seconds: 0.3, gcs: 1, cpu_seconds: 1, watch_restarts: 0, stage_p99_ms: {} },
    }],
    calibration: { raw_etcd: { put_txn: { p99_ms: 3 }, delete_txn: { p99_ms: 2 } }, floor_p99_ms: { registration: 11, deregistration: 8 } },
    targets: { rate, controller: { registration: check(regP99, controllerMet), deregistration: check(4, true) }, e2e: { registration: check(regP99, true), deregistration: check(4, true) } },
  } as unknown as BenchResult;
}

test('the latency table spans the runs and counts the runs that met each target', () => {
  const rows = latencyRanges([result(9.5, true), result(21, false)], 200);
  const row = (start: string): string => rows.find((r) => r.startsWith(`| ${start}`)) ?? assert.fail(`no row ${start}`);
  assert.equal(row('end to end'), '| end to end (API ack → etcd watch): p50 / p95 / p99 / max (ms) | 1 / 2 / 9.5-21 / 19-42 | 1 / 2 / 4 / 8 |');
  assert.equal(row('controller target'), '| controller target p99 ≤ 20 ms | met in 1 of 2 runs | met in 2 of 2 runs |');
  assert.equal(row('raw etcd'), '| raw etcd txn p99 / e2e floor p99 (ms) | 3 / 11 | 2 / 8 |');
  assert.match(row('where the p99 goes'), /txn 4\.75-10\.5/);
});

test('a run without a latency run at the asked rate is an error naming it', () => {
  assert.throws(() => latencyRanges([result(9, true, 50)], 200), /run with p99 9 has no latency run at 200\/s/);
});

function intakeRun(pace: number | undefined): BenchResult {
  const side = (keys: number) => ({
    keys_per_s: keys, intake_floor_keys_per_s: keys * 2, ratio_to_intake_floor: 0.5, controller_cpu_s: 1, replay_mb: 14.3,
    ...(pace === undefined ? {} : { machine_pace: { events: 5000, median_ms: pace, best_ms: pace - 50, worst_ms: pace + 90 } }),
  });
  const relist = { items: 10000, seconds: 0.5, cpu_s: 0.5, peak_rss_mb: 240, baseline_rss_mb: 155 };
  const steady = { registered_keys: 10000, cpu_percent: 0.2, rss_mb: 125, heap_used_mb: 36, etcd_requests_per_s: 0.05 };
  return {
    burst: { json: side(3000), protobuf: side(5000) },
    relist: { json: relist, protobuf: relist },
    steady: { ...steady, node_defaults: steady },
  } as unknown as BenchResult;
}

test("the issue-15 table has the machine's pace as a column once a run measured it, over those runs", () => {
  const [header, rule, json, protobuf] = contentTypeRanges([intakeRun(undefined), intakeRun(198.4), intakeRun(245.3)]);
  assert.match(header ?? '', /\| relist peak RSS MB \(baseline\) \| machine pace ms \|$/);
  assert.equal(rule, '|---|---|---|---|---|---|---|---|---|---|');
  assert.match(json ?? '', /^\| json \| 3000 \|.*\| 198-245 \|$/);
  assert.match(protobuf ?? '', /^\| protobuf \| 5000 \|.*\| 198-245 \|$/);
  // Runs from before the pace keep the published table's shape.
  const [oldHeader, oldRule] = contentTypeRanges([intakeRun(undefined)]);
  assert.doesNotMatch(oldHeader ?? '', /machine pace/);
  assert.equal(oldRule, '|---|---|---|---|---|---|---|---|---|');
});
