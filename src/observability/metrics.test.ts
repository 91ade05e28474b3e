import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metrics } from './metrics.ts';

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));
const metricSum = (text: string, name: string): number | undefined => {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined ? undefined : Number(line.slice(name.length + 1));
};

test('the event-loop delay gauges read the delay beyond the 100 ms sampling period, once per name', async () => {
  const metrics = new Metrics({ queueDepth: () => 0, lastKeepaliveAt: () => undefined, ownedKeys: () => 0, watchedPods: () => 0 });
  await sleep(1000);
  const idle = await metrics.registry.metrics();
  // Idle, the samples come on time: the delay is near 0, not the 100 ms between samples.
  assert.ok((metricSum(idle, 'etcd_registrar_nodejs_eventloop_lag_p50_seconds') ?? 1) < 0.02, idle);
  // A sample after a reset has nothing to compare with: stall one period later.
  await sleep(250);
  const stalledAt = performance.now();
  while (performance.now() - stalledAt < 300) {
    // the event loop is blocked
  }
  await sleep(500);
  const stalled = await metrics.registry.metrics();
  const max = metricSum(stalled, 'etcd_registrar_nodejs_eventloop_lag_max_seconds') ?? 0;
  assert.ok(max >= 0.15 && max <= 0.35, `max ${max} s after a 300 ms stall`);
  for (const figure of ['min', 'max', 'mean', 'stddev', 'p50', 'p90', 'p99']) {
    assert.equal(stalled.split('\n').filter((line) => line.startsWith(`etcd_registrar_nodejs_eventloop_lag_${figure}_seconds `)).length, 1, figure);
  }
});

test('the pod watch counters are read from their sources when scraped', async () => {
  let restarts = 2;
  let closures = 5;
  const metrics = new Metrics({
    queueDepth: () => 0,
    lastKeepaliveAt: () => undefined,
    ownedKeys: () => 0,
    watchedPods: () => 0,
    sourceRestarts: () => restarts,
    watchServerClosures: () => closures,
  });
  const first = await metrics.registry.metrics();
  assert.equal(metricSum(first, 'etcd_registrar_watch_restarts_total'), 2);
  assert.equal(metricSum(first, 'etcd_registrar_watch_server_closures_total'), 5);
  restarts = 3;
  closures = 9;
  const second = await metrics.registry.metrics();
  assert.equal(metricSum(second, 'etcd_registrar_watch_restarts_total'), 3);
  assert.equal(metricSum(second, 'etcd_registrar_watch_server_closures_total'), 9);
});
