// The published benchmark figures are a promise: every table of ranges in docs/benchmarks.md
// must be what bench/ranges.ts prints from the runs' JSON committed beside it, and the README's
// latency row must quote the same ranges.
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { test } from 'node:test';
import type { BenchResult } from '../../bench/bench.ts';
import { contentTypeRanges, latencyRanges, otherRanges, scaleRanges } from '../../bench/ranges.ts';
import { repoRoot } from '../e2e/support.ts';

const RUNS = join(repoRoot, 'docs', 'benchmark-runs');
/** The runs the current tables were made from (docs/benchmarks.md, "Latency with the method of issue 16"). */
const PUBLISHED = '2026-12-03-';

async function runs(kind: 'quick' | 'full'): Promise<BenchResult[]> {
  const files = (await readdir(RUNS)).filter((f) => f.startsWith(PUBLISHED) && f.endsWith(`-${kind}.json`)).sort();
  assert.ok(files.length > 0, `no ${kind} runs ${PUBLISHED}* in docs/benchmark-runs`);
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(join(RUNS, f), 'utf8')) as BenchResult));
}

test('the tables of ranges in docs/benchmarks.md are printed from the committed runs', async () => {
  const doc = await readFile(join(repoRoot, 'docs', 'benchmarks.md'), 'utf8');
  const quick = await runs('quick');
  const full = await runs('full');
  assert.equal(quick.length, 5, 'five quick runs, as issue 16 asks');
  assert.equal(full.length, 2, 'two full runs');
  for (const table of [latencyRanges(quick, 200), latencyRanges(full, 200), otherRanges(quick), otherRanges(full)]) {
    assert.ok(doc.includes(table.join('\n')), `docs/benchmarks.md lacks this table, as bench/ranges.ts prints it:\n${table.join('\n')}`);
  }
});

/** Issue 15's runs of one kind: `full` (the default tiers) or `scale` (tiers up to 50,000 pods). */
async function issue15Runs(kind: 'full' | 'scale'): Promise<BenchResult[]> {
  const files = (await readdir(RUNS)).filter((f) => f.endsWith(`-issue15-${kind}-bench.json`)).sort();
  assert.ok(files.length > 0, `no *-issue15-${kind}-bench.json in docs/benchmark-runs`);
  return Promise.all(files.map(async (f) => JSON.parse(await readFile(join(RUNS, f), 'utf8')) as BenchResult));
}

test("issue 15's tables in docs/benchmarks.md and the README are printed from its committed runs", async () => {
  const doc = await readFile(join(repoRoot, 'docs', 'benchmarks.md'), 'utf8');
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const intake = contentTypeRanges(await issue15Runs('full'));
  const scale = scaleRanges(await issue15Runs('scale'));
  assert.ok(intake.length > 0 && scale.length > 0);
  for (const table of [intake, scale]) {
    assert.ok(doc.includes(table.join('\n')), `docs/benchmarks.md lacks this table, as bench/ranges.ts prints it:\n${table.join('\n')}`);
  }
  assert.ok(readme.includes(intake.join('\n')), `the README lacks the JSON vs protobuf table:\n${intake.join('\n')}`);
});

test('the README quotes the p99 ranges over all published runs', async () => {
  const readme = await readFile(join(repoRoot, 'README.md'), 'utf8');
  const all = [...(await runs('quick')), ...(await runs('full'))];
  const row = (name: string): string => latencyRanges(all, 200).find((r) => r.startsWith(`| ${name}`)) ?? assert.fail(name);
  const cells = (r: string): string[] => r.split(' | ').slice(1).map((c) => c.replace(/ \|$/, ''));
  const p99 = (cell: string): string => (cell.split(' / ')[2] ?? '').replace('-', '–');
  const [reg, dereg] = cells(row('end to end')).map(p99);
  assert.ok(readme.includes(`registration ${reg ?? '?'} ms, deregistration ${dereg ?? '?'} ms`), `README's end-to-end p99: registration ${reg} ms, deregistration ${dereg} ms`);
  const controller = cells(row('controller (event')).map((c) => (c.split(' / ')[1] ?? '').replace('-', '–'));
  assert.ok(readme.includes(`registration ${controller[0]} ms, deregistration ${controller[1]} ms`), `README's controller p99: ${controller.join(', ')}`);
});
