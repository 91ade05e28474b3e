// The benchmark runs end to end at a tiny size. It asserts that every figure is a finite number
// >= 0 and that the phases did their work (keys registered, none deleted by the restart); timings
// are not asserted (benchmarks are not run by the test command).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBench } from '../../bench/bench.ts';
import { cdfSvg, markdownReport } from '../../bench/report.ts';
import { chartMemoryLimitMb } from '../../bench/memory-limit.ts';
import type { Decomposition } from '../../bench/decompose.ts';

test('the benchmark runs end to end at tiny size and reports finite non-negative figures', async () => {
  const result = await runBench({ size: 'tiny' });
  // Issue 15: both sides of each JSON vs protobuf comparison, and the steady state with Node's defaults.
  const { content_type: burstType, json: burstJson, protobuf: burstProtobuf, cpu_budget: burstBudget, machine_pace: burstPace, ...burst } = result.burst;
  const { node_defaults: nodeDefaults, node_defaults_in_limit: inLimit, ...steady } = result.steady;
  assert.ok(burstJson !== undefined && burstProtobuf !== undefined, 'burst.json and burst.protobuf');
  assert.ok(result.relist !== undefined, 'relist');
  assert.ok(nodeDefaults !== undefined, 'steady.node_defaults');
  const expiry = result.expiry_relist;
  assert.ok(expiry !== undefined, 'expiry_relist');
  const { content_type: jsonType, cpu_budget: jsonBudget, machine_pace: jsonPace, ...jsonSide } = burstJson;
  const { content_type: protobufType, cpu_budget: protobufBudget, machine_pace: protobufPace, ...protobufSide } = burstProtobuf;
  const { content_type: relistJsonType, ...relistJson } = result.relist.json;
  const { content_type: relistProtobufType, ...relistProtobuf } = result.relist.protobuf;
  const { node_options: nodeOptions, ...defaults } = nodeDefaults;
  assert.deepEqual([burstType, jsonType, protobufType, relistJsonType, relistProtobufType, nodeOptions], ['protobuf', 'json', 'protobuf', 'json', 'protobuf', '']);
  // The top-level burst is the protobuf side (the shipped default), for the consumers of old runs.
  assert.deepEqual([burst, burstBudget, burstPace], [protobufSide, protobufBudget, protobufPace]);
  // The machine's pace beside each side: a fixed piece of work, timed in rounds.
  for (const [name, pace] of [['json', jsonPace], ['protobuf', protobufPace]] as const) {
    assert.ok(pace !== undefined && pace.best_ms > 0 && pace.best_ms <= pace.median_ms && pace.median_ms <= pace.worst_ms, `burst.${name}.machine_pace: ${JSON.stringify(pace)}`);
  }
  // Each side's CPU budget holds the controller's CPU as controller_cpu_s measures it (the same
  // /proc counters, 0.01 s ticks; a 20-pod burst may tick the API server not at all), within what
  // the cores could give over the window. The attribution itself: test/bench/decompose.test.ts.
  for (const [name, side, budget] of [['json', jsonSide, jsonBudget], ['protobuf', protobufSide, protobufBudget]] as const) {
    assert.ok(budget !== undefined, `burst.${name}.cpu_budget`);
    assert.ok(Math.abs((budget.core_s['controller'] ?? 0) - side.controller_cpu_s) <= 0.05, `burst.${name}: budget's controller ${budget.core_s['controller']} s vs controller_cpu_s ${side.controller_cpu_s}`);
    assert.ok(budget.window_s > 0 && budget.busy_share >= 0 && budget.busy_share <= 1.05, `burst.${name}: ${budget.busy_share} of ${budget.capacity_core_s} core-s over ${budget.window_s} s`);
  }
  for (const [name, side] of [['json', jsonSide], ['protobuf', protobufSide]] as const) {
    assert.equal(side.missing, 0, `burst.${name}.missing`);
    assert.equal(side.replay_events, 20, `burst.${name}.replay_events`);
    for (const field of ['keys_per_s', 'intake_floor_keys_per_s', 'ratio_to_intake_floor', 'replay_mb', 'replay_seconds'] as const) {
      assert.ok(side[field] > 0, `burst.${name}.${field} = ${side[field]}`);
    }
  }
  for (const [name, relist] of [['json', relistJson], ['protobuf', relistProtobuf]] as const) {
    assert.equal(relist.items, 20, `relist.${name}.items`);
    for (const field of ['seconds', 'cpu_s', 'peak_rss_mb', 'baseline_rss_mb'] as const) assert.ok(relist[field] > 0, `relist.${name}.${field} = ${relist[field]}`);
    assert.ok(relist.peak_rss_mb >= relist.baseline_rss_mb, `relist.${name}: peak RSS below the baseline`);
  }
  assert.equal(defaults.registered_keys, 20);
  assert.ok(defaults.rss_mb > 0 && defaults.cpu_percent > 0, `steady.node_defaults: ${defaults.rss_mb} MB, ${defaults.cpu_percent} %`);
  assert.ok(Math.abs(defaults.window_seconds - steady.window_seconds) < 1, 'the same steady window');
  // Under the chart's memory limit where a cgroup can be made; otherwise a note says why not.
  if (inLimit === undefined) assert.ok(result.notes.some((note) => note.includes("Node's defaults under the chart's")), 'why the in-limit variant is missing');
  else assert.deepEqual([inLimit.registered_keys, inLimit.memory_limit_mb, inLimit.rss_mb > 0], [20, chartMemoryLimitMb(), true]);
  const figures: Record<string, Record<string, number>> = {
    registration: { ...result.registration },
    deregistration: { ...result.deregistration },
    burst,
    'burst.json': jsonSide,
    'burst.protobuf': protobufSide,
    'relist.json': relistJson,
    'relist.protobuf': relistProtobuf,
    restart: { ...result.restart },
    expiry_relist: { ...expiry, cause: 0 },
    steady,
    'steady.node_defaults': defaults,
    ...Object.fromEntries(result.reconcile.map((r, i) => [`reconcile[${i}]`, { ...r }])),
  };
  assert.equal(result.reconcile.length, 1);
  // Small as it is, the run must have done what it reports on.
  assert.equal(result.burst.missing, 0);
  assert.equal(result.reconcile[0]?.keys, 20);
  assert.ok((result.reconcile[0]?.reconciles ?? 0) >= 2);
  assert.equal(result.restart.keys_deleted, 0);
  // The API server restarted under the controller at rest: its watch could not resume, it
  // relisted, and the relist changed nothing in etcd.
  assert.notEqual(expiry.cause, 'none', 'the pod watch relisted after the API server restart');
  assert.deepEqual([expiry.pods, expiry.keys_deleted, expiry.keys_written], [20, 0, 0]);
  assert.ok(expiry.seconds > 0 && expiry.peak_rss_mb > 0, `expiry_relist: ${expiry.seconds} s, ${expiry.peak_rss_mb} MB`);
  assert.equal(result.steady.registered_keys, 20);
  for (const [group, values] of Object.entries(figures)) {
    for (const [name, value] of Object.entries(values)) {
      assert.ok(typeof value === 'number' && Number.isFinite(value) && value >= 0, `${group}.${name} = ${String(value)}`);
    }
  }
  // The 200/s path at tiny size (10 pods at 50/s): every transition timed from the API server's
  // acknowledgement, joined with the controller's stage times and seen by the probe.
  const benchRun = result.latency_runs.find((run) => run.driver === 'bench');
  assert.ok(benchRun !== undefined);
  for (const kind of ['registration', 'deregistration'] as const) {
    const d: Decomposition = benchRun.decomposition[kind];
    assert.equal(d.t0, 'api-ack');
    assert.deepEqual([d.transitions, d.missing, d.untraced], [10, 0, 0], kind);
    for (const stage of ['e2e', 'api_to_controller', 'queue', 'txn', 'commit_to_watch', 'controller', 'intake_floor'] as const) {
      assert.equal(d.stages[stage].samples, 10, `${kind} ${stage}`);
    }
    // The controller's own stages are durations on one clock: never negative.
    for (const stage of ['intake', 'queue', 'plan', 'txn', 'controller'] as const) assert.ok(d.stages[stage].p50_ms >= 0, `${kind} ${stage}`);
    assert.ok(result.targets !== undefined && Number.isFinite(result.targets.controller[kind].p99_ms));
  }
  assert.equal(result.calibration?.raw_etcd.put_txn.samples, 25);
  assert.equal(result.calibration?.raw_etcd.delete_to_watch.samples, 25);
  assert.ok(benchRun.controller.cpu_seconds > 0);
  const report = markdownReport(result);
  assert.match(report, /Where the time goes/);
  assert.match(report, /## JSON vs protobuf/);
  assert.match(report, /The machine's pace after each side .*: JSON [\d.]+ ms for 5000 \(rounds [\d.]+–[\d.]+\); protobuf [\d.]+ ms for 5000/);
  assert.match(report, /\| Node's defaults \| 20 \|/);
  assert.match(report, /## Relist after a watch expiry/);
  assert.match(report, /<svg /);
  assert.match(report, /<\/svg>/);
});

test('the CDF chart is well-formed for empty and single-sample series', () => {
  const svg = cdfSvg([{ label: 'a<b', samples: [] }, { label: 'one', samples: [3] }]);
  assert.match(svg, /^<svg /);
  assert.match(svg, /a&lt;b/);
  assert.doesNotMatch(svg, /NaN|Infinity/);
});
