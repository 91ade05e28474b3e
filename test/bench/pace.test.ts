// The machine's pace (bench/pace.ts): the fixed work maps every event to its registration, and
// the figure is a round's time, never a made-up number.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { defaultMappingConfig, mapPod } from '../../src/mapping/index.ts';
import { toSlimPod } from '../../src/source/slim.ts';
import { machinePace, measurePace, paceEventText } from '../../bench/pace.ts';

test("a pace event is a Ready pod's watch event that maps to its registration", () => {
  const event = JSON.parse(paceEventText(300)) as { type: string; object: Parameters<typeof toSlimPod>[0] };
  assert.equal(event.type, 'MODIFIED');
  const pod = toSlimPod(event.object);
  assert.ok(pod !== undefined);
  const mapping = mapPod(pod, { ...defaultMappingConfig, environment: 'PRE' });
  assert.equal(mapping.kind, 'valid');
  assert.ok(mapping.kind === 'valid' && mapping.serving);
  assert.deepEqual(mapping.registrations.map((r) => [r.key, r.value]), [['/bench_PRE/10.250.1.44-86', '10.250.1.44:86']]);
  // As large as the API server's event of the burst's pod, give or take its defaults.
  assert.ok(paceEventText(0).length > 3000, `${paceEventText(0).length} bytes`);
});

test('the pace is ordered rounds of the fixed work', () => {
  const pace = measurePace(200, 3);
  assert.equal(pace.events, 200);
  assert.ok(pace.best_ms > 0 && pace.best_ms <= pace.median_ms && pace.median_ms <= pace.worst_ms, JSON.stringify(pace));
});

test('the pace is measured in a fresh process', { timeout: 60_000 }, async () => {
  const pace = await machinePace();
  assert.equal(pace.events, 5000);
  assert.ok(pace.best_ms > 0 && pace.best_ms <= pace.median_ms && pace.median_ms <= pace.worst_ms, JSON.stringify(pace));
});
