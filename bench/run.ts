// npm run bench [-- --quick] [--json FILE] [--report FILE] [--reconcile-pods 1000,10000] [--allow-loaded]
// Needs the built controller (npm run build) and the cluster tools (npm run tools).
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { runBench, type BenchResult } from './bench.ts';
import { LoadMonitor } from './load.ts';
import { markdownReport } from './report.ts';

const { values } = parseArgs({
  options: {
    quick: { type: 'boolean', default: false },
    tiny: { type: 'boolean', default: false },
    json: { type: 'string' },
    report: { type: 'string', default: 'bench/results/report.md' },
    'reconcile-pods': { type: 'string' },
    'allow-loaded': { type: 'boolean', default: false },
  },
});

const size = values.tiny ? 'tiny' : values.quick ? 'quick' : 'full';
const reconcilePods = values['reconcile-pods']?.split(',').map(Number);
if (reconcilePods !== undefined && !reconcilePods.every((n, i) => Number.isInteger(n) && n > 0 && n > (reconcilePods[i - 1] ?? 0))) {
  throw new Error('--reconcile-pods: ascending positive integers, e.g. 1000,10000');
}
const log = (line: string): void => console.error(`[bench ${new Date().toISOString()}] ${line}`);
const allowLoaded = values['allow-loaded'];

/** Figures from a busy machine describe the machine: refuse them unless asked for (development). */
function refuse(reasons: readonly string[]): never {
  console.error(`bench: refusing to report: the machine is loaded (${reasons.join('; ')}); run on a quiet machine, or pass --allow-loaded to get the figures anyway (development only)`);
  process.exit(1);
}

const load = new LoadMonitor(allowLoaded);
log('checking that the machine is quiet (3 s)');
const pre = await load.preflight(3000, allowLoaded ? 0 : 120_000, log);
log(`other processes: ${pre.other_cpu_cores} cores (${pre.top.join(', ') || 'none'}), load average ${pre.loadavg_1m}`);
if (load.loaded && !allowLoaded) refuse(load.report().reasons);

const result = await runBench({ size, reconcilePods, log, load });
if (result.load?.loaded === true) {
  if (!allowLoaded) refuse(result.load.reasons);
  result.notes.push(`LOADED MACHINE (--allow-loaded): ${result.load.reasons.join('; ')}: the latency figures describe the machine, not the controller`);
}

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
const latency = result.latency_runs.map((run) => ({
  rate: run.target_rate,
  driver: run.driver,
  registration: run.decomposition.registration.stages,
  deregistration: run.decomposition.deregistration.stages,
  p99_breakdown: { registration: run.decomposition.registration.p99_breakdown, deregistration: run.decomposition.deregistration.p99_breakdown },
  controller: run.controller,
}));
console.log(JSON.stringify({
  registration: result.registration,
  deregistration: result.deregistration,
  latency,
  calibration: result.calibration,
  targets: result.targets,
  burst: result.burst,
  reconcile: result.reconcile,
  restart: result.restart,
  steady: result.steady,
  relist: result.relist,
  load: result.load === undefined ? undefined : { loaded: result.load.loaded, reasons: result.load.reasons, checks: result.load.checks },
  notes: result.notes,
}, null, 2));
