// The trimmer's decision on fake figures, and the collector on a real Node process.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { Writable } from 'node:stream';
import { pino } from 'pino';
import { HeapTrimmer } from './heap-trim.ts';

const MB = 1024 * 1024;

function trimmerWith(rss: number[], nowMs: () => number) {
  const lines: Array<Record<string, unknown>> = [];
  const logger = pino({ level: 'info' }, new Writable({ write: (chunk: Buffer, _encoding, callback) => { lines.push(JSON.parse(chunk.toString()) as Record<string, unknown>); callback(); } }));
  let collections = 0;
  const trimmer = new HeapTrimmer(
    { logger, rss: () => rss.shift() ?? 0, collect: () => { collections++; }, now: nowMs },
    { growthShare: 0.2, minGrowthBytes: 16 * MB, minIntervalMs: 60_000 },
  );
  return { trimmer, lines, collections: () => collections };
}

test('HeapTrimmer: trims after the first reconcile, then only on growth beyond both thresholds and not within the interval', () => {
  let now = 0;
  // rss() is read before and after each collection.
  const { trimmer, lines, collections } = trimmerWith([230 * MB, 150 * MB], () => now);
  assert.equal(trimmer.afterPeak('reconcile (startup)'), true);
  assert.equal(collections(), 1);
  assert.deepEqual(
    { reason: lines[0]?.['reason'], before: lines[0]?.['rssBeforeMb'], after: lines[0]?.['rssAfterMb'] },
    { reason: 'reconcile (startup)', before: 230, after: 150 },
  );
  // Baseline 150 MB: 20 % is 30 MB, more than the 16 MB floor.
  now = 59_000;
  assert.equal(trimmer.due(400 * MB, now), false, 'within the interval');
  now = 61_000;
  assert.equal(trimmer.due(179 * MB, now), false, 'grew 29 MB: under 20 %');
  assert.equal(trimmer.due(180 * MB, now), true, 'grew 30 MB: 20 %');
  assert.equal(collections(), 1);
});

test('HeapTrimmer: a small process needs the absolute floor too', () => {
  let now = 0;
  const { trimmer } = trimmerWith([60 * MB, 50 * MB], () => now);
  trimmer.afterPeak('reconcile (startup)');
  now = 120_000;
  assert.equal(trimmer.due(65 * MB, now), false, 'grew 15 MB (30 %): under 16 MB');
  assert.equal(trimmer.due(66 * MB, now), true);
});

test('HeapTrimmer: without a collector it does nothing', () => {
  const logger = pino({ level: 'silent' });
  const trimmer = new HeapTrimmer({ logger, collect: undefined, rss: () => 1e12 });
  assert.equal(trimmer.afterPeak('reconcile (startup)'), false);
  assert.equal(trimmer.trims, 0);
});

test('lastResortCollector: returns the pages of a transient peak to the system, and leaves no global gc behind', async () => {
  // A process of its own: the test runner's memory is not this test's to measure.
  const script = `
    import { lastResortCollector } from ${JSON.stringify(new URL('./heap-trim.ts', import.meta.url).href)};
    const live = Array.from({ length: 50_000 }, (_, i) => ({ key: 'k' + i }));
    for (let round = 0; round < 20; round++) Array.from({ length: 100_000 }, (_, i) => ({ a: 'x' + i, b: [i] }));
    const before = process.memoryUsage.rss();
    const collect = lastResortCollector();
    collect?.();
    console.log(JSON.stringify({ before, after: process.memoryUsage.rss(), collector: typeof collect, globalGc: typeof globalThis.gc, live: live.length }));
  `;
  const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
  const out = JSON.parse(stdout) as { before: number; after: number; collector: string; globalGc: string; live: number };
  assert.equal(out.collector, 'function');
  assert.equal(out.globalGc, 'undefined');
  assert.equal(out.live, 50_000);
  assert.ok(out.before - out.after > 40 * MB, `RSS ${Math.round(out.before / MB)} -> ${Math.round(out.after / MB)} MB`);
});
