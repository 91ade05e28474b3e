// The bench's per-transition decomposition and its load check, on hand-made inputs.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { decompose, floorP99, histogramQuantile, type ControllerTiming } from '../../bench/decompose.ts';
import { spawn } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { cpuBudget, cpuSnapshot, otherCpu } from '../../bench/load.ts';

test('each transition is split into its stages, correlated by key and etcd revision', () => {
  const timings: ControllerTiming[] = [
    { key: '/a', change: 'deregistration', revision: '10', receivedAt: 1002, enqueuedAt: 1002.5, takenAt: 1003, sentAt: 1004, committedAt: 1008 },
    // An older change of the same key: not the one the watch saw.
    { key: '/a', change: 'deregistration', revision: '7', receivedAt: 500, enqueuedAt: 500, takenAt: 500, sentAt: 500, committedAt: 501 },
    { key: '/b', change: 'registration', revision: '11', receivedAt: 0, enqueuedAt: 0, takenAt: 0, sentAt: 0, committedAt: 0 },
  ];
  const arrivals = new Map([['/a', { at: 1010, revision: '10' }], ['/b', { at: 2050, revision: '12' }]]);
  const { decomposition: d, e2e } = decompose(
    'deregistration', 'api-ack',
    [{ key: '/a', t0: 1000, resourceVersion: 'rv1' }, { key: '/b', t0: 2000, resourceVersion: 'rv2' }, { key: '/c', t0: 3000, resourceVersion: 'rv3' }],
    (key) => arrivals.get(key), timings,
    new Map([['rv1', 1001]]), new Map([['rv1', 1020], ['rv2', 2001]]),
  );
  assert.deepEqual(e2e, [10, 50]);
  assert.equal(d.missing, 1);
  assert.equal(d.untraced, 1, '/b has no deregistration timing');
  assert.equal(d.stages.api_to_controller.p99_ms, 2);
  assert.equal(d.stages.queue.p99_ms, 0.5);
  assert.equal(d.stages.txn.p99_ms, 4);
  assert.equal(d.stages.commit_to_watch.p99_ms, 2);
  assert.equal(d.stages.controller.p99_ms, 6);
  assert.equal(d.stages.intake_floor.p99_ms, 1);
  assert.equal(d.stages.observer_lag.samples, 2);
  assert.equal(d.observer_after_etcd, 1, 'the observer saw rv1 after etcd had the change');
  assert.deepEqual({ samples: d.p99_breakdown.samples, e2e: d.p99_breakdown.e2e_ms }, { samples: 1, e2e: 50 });
});

test('the floor pairs intake and etcd samples; histogram quantiles come from bucket deltas', () => {
  assert.equal(floorP99([1, 2, 3], [10, 20]), 22); // 11, 22, 13
  assert.equal(floorP99([], [1]), 0);
  const text = (a: number, b: number, inf: number): string => [
    `x_bucket{stage="txn",change="registration",le="0.001"} ${a}`,
    `x_bucket{stage="txn",change="registration",le="0.01"} ${b}`,
    `x_bucket{stage="txn",change="registration",le="+Inf"} ${inf}`,
    `x_bucket{stage="queue",change="registration",le="0.001"} 999`,
  ].join('\n');
  assert.equal(histogramQuantile(text(5, 5, 5), text(105, 204, 205), 'x', { stage: 'txn', change: 'registration' }, 0.99), 0.01);
  assert.equal(histogramQuantile(text(5, 5, 5), text(105, 105, 205), 'x', { stage: 'txn', change: 'registration' }, 0.99), Infinity);
  assert.equal(histogramQuantile(text(5, 5, 5), text(5, 5, 5), 'x', { stage: 'txn' }, 0.99), undefined);
});

test('the load check counts CPU outside the bench process tree only', async () => {
  const before = cpuSnapshot();
  const until = performance.now() + 300;
  while (performance.now() < until) Math.sqrt(Math.random()); // busy in this (the bench's) process
  const other = otherCpu(before, cpuSnapshot());
  assert.ok(other.seconds > 0.2);
  assert.ok(other.cores >= 0);
  assert.ok(!other.top.some((t) => t.includes(`(${process.pid})`)), 'this process is not "other"');
});

test("the burst's CPU budget gives a named process its own CPU (its children included) and the bench the rest of its tree", async () => {
  // A shell that runs a busy node child: the CPU is the child's, attributed to the shell's name.
  const busy = spawn('sh', ['-c', `exec ${JSON.stringify(process.execPath)} -e "const end = Date.now() + 600; while (Date.now() < end) Math.sqrt(Math.random());" & wait`], { stdio: 'ignore' });
  try {
    await new Promise((resolve) => setTimeout(resolve, 100));
    const before = cpuSnapshot();
    const until = performance.now() + 400;
    while (performance.now() < until) Math.sqrt(Math.random()); // the bench's own CPU
    const after = cpuSnapshot();
    const budget = cpuBudget(before, after, [{ name: 'busy-child', pid: busy.pid ?? -1 }]);
    // Other tests' processes may share the cores: the child gets some of them, not a given amount.
    const childPid = [...after.procs].find(([, stat]) => stat.ppid === busy.pid)?.[0];
    const childSeconds = childPid === undefined ? 0 : ((after.procs.get(childPid)?.ticks ?? 0) - (before.procs.get(childPid)?.ticks ?? 0)) / 100;
    assert.ok(childSeconds >= 0.05, `the busy child ran (${childSeconds} s)`);
    assert.ok((budget.core_s['busy-child'] ?? 0) >= childSeconds, `busy-child ${budget.core_s['busy-child']} s holds its child's ${childSeconds} s`);
    assert.ok((budget.core_s['bench'] ?? 0) >= 0.05, `bench ${budget.core_s['bench']} s`);
    assert.ok(budget.busy_share > 0 && budget.busy_share <= 1.05, `busy share ${budget.busy_share}`);
    assert.ok(Math.abs(budget.capacity_core_s - availableParallelism() * budget.window_s) < 0.02);
  } finally {
    busy.kill('SIGKILL');
  }
});
