// The benchmark runs end to end at a tiny size. It asserts that every figure is a finite number
// >= 0 and that the phases did their work (keys registered, none deleted by the restart); timings
// are not asserted (benchmarks are not run by the test command).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runBench } from '../../bench/bench.ts';
import { cdfSvg, markdownReport } from '../../bench/report.ts';

test('the benchmark runs end to end at tiny size and reports finite non-negative figures', async () => {
  const result = await runBench({ size: 'tiny' });
  const figures: Record<string, Record<string, number>> = {
    registration: { ...result.registration },
    deregistration: { ...result.deregistration },
    burst: { ...result.burst },
    restart: { ...result.restart },
    steady: { ...result.steady },
    ...Object.fromEntries(result.reconcile.map((r, i) => [`reconcile[${i}]`, { ...r }])),
  };
  assert.equal(result.reconcile.length, 1);
  // Small as it is, the run must have done what it reports on.
  assert.equal(result.burst.missing, 0);
  assert.equal(result.reconcile[0]?.keys, 20);
  assert.ok((result.reconcile[0]?.reconciles ?? 0) >= 2);
  assert.equal(result.restart.keys_deleted, 0);
  assert.equal(result.steady.registered_keys, 20);
  for (const [group, values] of Object.entries(figures)) {
    for (const [name, value] of Object.entries(values)) {
      assert.ok(typeof value === 'number' && Number.isFinite(value) && value >= 0, `${group}.${name} = ${String(value)}`);
    }
  }
  const report = markdownReport(result);
  assert.match(report, /<svg /);
  assert.match(report, /<\/svg>/);
});

test('the CDF chart is well-formed for empty and single-sample series', () => {
  const svg = cdfSvg([{ label: 'a<b', samples: [] }, { label: 'one', samples: [3] }]);
  assert.match(svg, /^<svg /);
  assert.match(svg, /a&lt;b/);
  assert.doesNotMatch(svg, /NaN|Infinity/);
});
