import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Histogram, Registry } from 'prom-client';
import { StageHistogram } from './stage-histogram.ts';

const BUCKETS = [0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5];
const NAME = 'etcd_registrar_change_stage_seconds';
const HELP = 'Time a change spent in each stage';

// Exact bounds, one beyond the last bound (+Inf only), a negative one (a clock step: the first
// bucket, as prom-client counts it), sums that are not whole numbers.
const OBSERVATIONS = [
  ['txn', 'registration', 0.003], ['intake', 'registration', 0.0005], ['txn', 'registration', 7.5],
  ['queue', 'deregistration', 0.001], ['txn', 'registration', -0.0002], ['total', 'registration', 0.25],
  ['intake', 'registration', 0.02], ['queue', 'deregistration', 5],
] as const;

function both(): { theirs: Histogram<'stage' | 'change'>; ours: StageHistogram<string, string>; registries: [Registry, Registry] } {
  const registries: [Registry, Registry] = [new Registry(), new Registry()];
  const theirs = new Histogram({ name: NAME, help: HELP, labelNames: ['stage', 'change'], buckets: BUCKETS, registers: [registries[0]] });
  const ours = new StageHistogram({ name: NAME, help: HELP, stages: ['intake', 'queue', 'plan', 'txn', 'total'], changes: ['registration', 'deregistration'], buckets: BUCKETS, registers: [registries[1]] });
  return { theirs, ours, registries };
}

test('the exposition is the one prom-client gives for the same observations, series in the order first seen', async () => {
  const { theirs, ours, registries } = both();
  for (const [stage, change, seconds] of OBSERVATIONS) {
    theirs.observe({ stage, change }, seconds);
    ours.record(stage, change, seconds);
  }
  const [expected = '', actual] = await Promise.all(registries.map((r) => r.metrics()));
  assert.ok(expected.includes(`${NAME}_bucket{le="+Inf",stage="txn",change="registration"} 3`), expected);
  assert.equal(actual, expected);
  // getMetricsAsJSON (get()): the same series, `le` among the labels.
  const [expectedJson, actualJson] = await Promise.all(registries.map((r) => r.getMetricsAsJSON()));
  assert.equal(JSON.stringify(actualJson), JSON.stringify(expectedJson));
});

test('a reset empties every series; values that are not finite numbers, or unknown labels, are dropped without throwing', async () => {
  const { theirs, ours, registries } = both();
  ours.record('txn', 'registration', 0.01);
  ours.reset();
  ours.record('txn', 'registration', Number.NaN);
  ours.record('txn', 'registration', Number.POSITIVE_INFINITY);
  ours.record('nope', 'registration', 0.01);
  ours.record('intake', 'deregistration', 0.004);
  theirs.observe({ stage: 'intake', change: 'deregistration' }, 0.004);
  const [expected, actual = ''] = await Promise.all(registries.map((r) => r.metrics()));
  assert.equal(actual, expected);
  assert.doesNotMatch(actual, /stage="txn"/);
});
