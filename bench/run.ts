// npm run bench [-- --quick] [--json FILE] [--report FILE] [--reconcile-pods 1000,10000]
// Needs the built controller (npm run build) and the cluster tools (npm run tools).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runBench, type BenchResult } from './bench.ts';
import { markdownReport } from './report.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    tiny: { type: 'boolean', default: false },
    json: { type: 'string' },
    report: { type: 'string', default: 'bench/results/report.md' },
    'reconcile-pods': { type: 'string' },
  },
});

const size = values.tiny ? 'tiny' : values.quick ? 'quick' : 'full';
const reconcilePods = values['reconcile-pods']?.split(',').map(Number);
if (reconcilePods !== undefined && !reconcilePods.every((n, i) => Number.isInteger(n) && n > 0 && n > (reconcilePods[i - 1] ?? 0))) {
  throw new Error('--reconcile-pods: ascending positive integers, e.g. 1000,10000');
}
const result = await runBench({ size, reconcilePods, log: (line) => console.error(`[bench ${new Date().toISOString()}] ${line}`) });

function forJson(r: BenchResult): unknown {
  // The raw samples belong in the chart, not in the figures file.
  return { ...r, latency_runs: r.latency_runs.map(({ registrationSamples: _r, deregistrationSamples: _d, ...rest }) => rest) };
}

async function write(path: string, text: string): Promise<void> {
  const full = resolve(path);
  await mkdir(dirname(full), { recursive: true });
  await writeFile(full, text);
  console.error(`wrote ${full}`);
}

if (values.json !== undefined) await write(values.json, `${JSON.stringify(forJson(result), null, 2)}\n`);
await write(values.report, markdownReport(result));
console.log(JSON.stringify({ registration: result.registration, deregistration: result.deregistration, burst: result.burst, reconcile: result.reconcile, restart: result.restart, steady: result.steady }, null, 2));
