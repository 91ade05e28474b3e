// Markdown report with a hand-written SVG CDF chart of the latency distributions.
import type { BenchResult, BurstSide, LatencyRun, RelistResult, SteadyFigures } from './bench.ts';
import { STAGES, type Decomposition } from './decompose.ts';

const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#ff7f0e'];

interface Series {
  readonly label: string;
  readonly samples: readonly number[];
}

function escapeXml(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

/** A CDF (fraction of samples ≤ x) per series; x axis in ms on a linear scale from 0 to the largest sample. */
export function cdfSvg(series: readonly Series[], width = 640, height = 360): string {
  const m = { left: 56, right: 16, top: 16, bottom: 44 };
  const w = width - m.left - m.right;
  const h = height - m.top - m.bottom;
  const maxX = Math.max(1, ...series.flatMap((s) => s.samples));
  const x = (v: number): number => m.left + (v / maxX) * w;
  const y = (f: number): number => m.top + (1 - f) * h;
  const out: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<rect width="${width}" height="${height}" fill="white"/>`,
  ];
  for (let i = 0; i <= 5; i++) {
    const f = i / 5;
    out.push(`<line x1="${m.left}" y1="${y(f)}" x2="${m.left + w}" y2="${y(f)}" stroke="#ddd"/>`);
    out.push(`<text x="${m.left - 6}" y="${y(f) + 4}" text-anchor="end">${f.toFixed(1)}</text>`);
    const v = (maxX * i) / 5;
    out.push(`<line x1="${x(v)}" y1="${m.top}" x2="${x(v)}" y2="${m.top + h}" stroke="#eee"/>`);
    out.push(`<text x="${x(v)}" y="${m.top + h + 16}" text-anchor="middle">${v < 10 ? v.toFixed(1) : Math.round(v)}</text>`);
  }
  out.push(`<rect x="${m.left}" y="${m.top}" width="${w}" height="${h}" fill="none" stroke="#333"/>`);
  out.push(`<text x="${m.left + w / 2}" y="${height - 6}" text-anchor="middle">latency (ms)</text>`);
  out.push(`<text x="14" y="${m.top + h / 2}" text-anchor="middle" transform="rotate(-90 14 ${m.top + h / 2})">fraction ≤ x</text>`);
  series.forEach((s, index) => {
    const color = COLORS[index % COLORS.length] ?? '#000';
    const sorted = [...s.samples].sort((a, b) => a - b);
    if (sorted.length > 0) {
      const points: string[] = [`${x(0).toFixed(1)},${y(0).toFixed(1)}`];
      sorted.forEach((v, i) => {
        points.push(`${x(v).toFixed(1)},${y(i / sorted.length).toFixed(1)}`);
        points.push(`${x(v).toFixed(1)},${y((i + 1) / sorted.length).toFixed(1)}`);
      });
      out.push(`<polyline fill="none" stroke="${color}" stroke-width="1.5" points="${points.join(' ')}"/>`);
    }
    const ly = m.top + 14 + index * 16;
    out.push(`<line x1="${m.left + w - 200}" y1="${ly - 4}" x2="${m.left + w - 180}" y2="${ly - 4}" stroke="${color}" stroke-width="2"/>`);
    out.push(`<text x="${m.left + w - 175}" y="${ly}">${escapeXml(`${s.label} (n=${sorted.length})`)}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}

function latencyRow(name: string, rate: number, s: LatencyRun['registration']): string {
  return `| ${name} | ${rate} | ${s.rate} | ${s.samples} | ${s.p50_ms} | ${s.p95_ms} | ${s.p99_ms} | ${s.max_ms} | ${s.missing} |`;
}

const STAGE_NAMES: Record<(typeof STAGES)[number], string> = {
  e2e: 'end to end (t0 → etcd watch)',
  api_to_controller: 'API server ack → controller received the event',
  intake: 'received → key enqueued',
  queue: 'enqueued → taken by a worker',
  plan: 'taken → txn sent',
  txn: 'txn sent → committed',
  commit_to_watch: 'committed → etcd watch',
  controller: 'controller (received → committed)',
  intake_floor: 'idle watcher (t0 → event received): intake floor',
  observer_lag: "bench's own pod watch (t0 → event received)",
};

function decompositionTable(label: string, d: Decomposition): string[] {
  const b = d.p99_breakdown;
  return [
    `**${label}** (t0: ${d.t0 === 'api-ack' ? "the API server's acknowledgement" : "the bench's pod watch"}; ${d.transitions} transitions, ${d.missing} missing, ${d.untraced} without a controller timing)`,
    '',
    `| stage | p50 ms | p95 ms | p99 ms | max ms | samples | mean over the slowest ${b.samples} (ms) |`,
    '|---|---|---|---|---|---|---|',
    ...STAGES.map((stage) => {
      const q = d.stages[stage];
      return `| ${STAGE_NAMES[stage]} | ${q.p50_ms} | ${q.p95_ms} | ${q.p99_ms} | ${q.max_ms} | ${q.samples} | ${stage === 'e2e' ? b.e2e_ms : (b[stage] ?? '–')} |`;
    }),
    '',
  ];
}

function decompositionSection(result: BenchResult): string[] {
  const out: string[] = ['## Where the time goes', ''];
  for (const run of result.latency_runs) {
    const c = run.controller;
    out.push(
      ...decompositionTable(`registration @${run.target_rate}/s`, run.decomposition.registration),
      ...decompositionTable(`deregistration @${run.target_rate}/s`, run.decomposition.deregistration),
      `Controller over the run: event-loop delay max ${c.event_loop_delay_max_ms} ms (p99 ${c.event_loop_delay_p99_ms} ms), GC ${c.gc_seconds} s in ${c.gcs} collections, CPU ${c.cpu_seconds} s, watch restarts ${c.watch_restarts}; stage histogram p99 (ms, bucket bounds): ${Object.entries(c.stage_p99_ms).map(([k, v]) => `${k} ${v ?? '–'}`).join(', ')}. The bench's own event-loop delay (how late its t0 stamps can be): p99 ${run.bench_event_loop_delay.p99_ms} ms, max ${run.bench_event_loop_delay.max_ms} ms.`,
      '',
    );
  }
  const cal = result.calibration;
  if (cal !== undefined) {
    const r = cal.raw_etcd;
    out.push(
      `Calibration at ${r.rate}/s: raw single-key etcd txn p50/p99 put ${r.put_txn.p50_ms}/${r.put_txn.p99_ms} ms, delete ${r.delete_txn.p50_ms}/${r.delete_txn.p99_ms} ms; txn → etcd watch p99 put ${r.put_to_watch.p99_ms} ms, delete ${r.delete_to_watch.p99_ms} ms. End-to-end floor p99 (idle watcher + raw txn → watch): registration ${cal.floor_p99_ms.registration} ms, deregistration ${cal.floor_p99_ms.deregistration} ms.`,
      '',
    );
  }
  const t = result.targets;
  if (t !== undefined) {
    out.push('| target @' + `${t.rate}/s | p99 ms | limit ms | met |`, '|---|---|---|---|');
    for (const kind of ['registration', 'deregistration'] as const) {
      out.push(`| controller, ${kind} | ${t.controller[kind].p99_ms} | ${t.controller[kind].limit_ms} | ${t.controller[kind].met ? 'yes' : 'NO'} |`);
      out.push(`| end to end, ${kind} | ${t.e2e[kind].p99_ms} | ${t.e2e[kind].limit_ms} | ${t.e2e[kind].met ? 'yes' : 'NO'} |`);
    }
    out.push('');
  }
  const load = result.load;
  if (load !== undefined) {
    out.push(`Load: ${load.loaded ? `LOADED (${load.reasons.join('; ')})` : 'quiet'}; other processes' CPU (cores): ${load.checks.map((c) => `${c.phase} ${c.other_cpu_cores}`).join(', ')}.`, '');
  }
  return out;
}

/** The issue-15 comparison: the burst and a full relist, JSON vs protobuf, measured in the same run. */
function contentTypeSection(result: BenchResult): string[] {
  const { json, protobuf } = result.burst;
  const relist = result.relist;
  if (json === undefined || protobuf === undefined) return [];
  const sides: ReadonlyArray<[string, BurstSide, RelistResult | undefined]> = [['JSON', json, relist?.json], ['protobuf', protobuf, relist?.protobuf]];
  const times = (a: number, b: number): string => (a > 0 && b > 0 ? `${round2(b / a)}×` : '–');
  return [
    '## JSON vs protobuf (--kube-content-type)',
    '',
    `Burst of ${protobuf.pods} pods Ready at once, once per content type on a fresh controller, one after the other on the same cluster. Intake floor: an idle client on the controller's own transport (src/source/kube-http.ts) in the same content type, decoding and slimming the same events.` +
      (relist === undefined ? '' : ` Relist: a full list of the ${relist.protobuf.items} pods present (pages of 500, slimmed into a Map) in a fresh process per content type.`),
    '',
    '| content type | burst keys/s | intake floor events/s | keys/s ÷ floor | controller CPU s | replay MB (wire) | relist s | relist CPU s | relist peak RSS MB (baseline) |',
    '|---|---|---|---|---|---|---|---|---|',
    ...sides.map(([name, b, r]) => `| ${name} | ${b.keys_per_s} | ${b.intake_floor_keys_per_s} | ${b.ratio_to_intake_floor} | ${b.controller_cpu_s} | ${b.replay_mb} | ${r?.seconds ?? '–'} | ${r?.cpu_s ?? '–'} | ${r === undefined ? '–' : `${r.peak_rss_mb} (${r.baseline_rss_mb})`} |`),
    `| protobuf ÷ JSON | ${times(json.keys_per_s, protobuf.keys_per_s)} | ${times(json.intake_floor_keys_per_s, protobuf.intake_floor_keys_per_s)} | | ${times(json.controller_cpu_s, protobuf.controller_cpu_s)} | ${times(json.replay_mb, protobuf.replay_mb)} | ${relist === undefined ? '–' : times(relist.json.seconds, relist.protobuf.seconds)} | ${relist === undefined ? '–' : times(relist.json.cpu_s, relist.protobuf.cpu_s)} | ${relist === undefined ? '–' : times(relist.json.peak_rss_mb, relist.protobuf.peak_rss_mb)} |`,
    '',
    ...paceLine(sides),
  ];
}

/** The machine's pace beside each burst side (runs since 2026-12-07), so that a slow burst can be told from a slow machine. */
function paceLine(sides: ReadonlyArray<readonly [string, BurstSide, unknown]>): string[] {
  const paced = sides.flatMap(([name, b]) => (b.machine_pace === undefined ? [] : [`${name} ${b.machine_pace.median_ms} ms for ${b.machine_pace.events} (rounds ${b.machine_pace.best_ms}–${b.machine_pace.worst_ms})`]));
  if (paced.length === 0) return [];
  return [`The machine's pace after each side (bench/pace.ts: pod events parsed, slimmed and mapped in a fresh process, the median of its rounds): ${paced.join('; ')}.`, ''];
}

/** The relist after the API server restarted under the controller at rest (issue 15). */
function expiryRelistSection(r: BenchResult['expiry_relist']): string[] {
  if (r === undefined) return [];
  return [
    '',
    '## Relist after a watch expiry',
    '',
    'The API server restarts under the restarted controller at rest: the pod watch cannot resume (an error while the API server is down, or 410 from its new watch cache), so the controller relists. The relist: the list attempt that succeeded (attempts fail while the API server is down, each retried after a logged backoff) to the controller\'s "pods listed".',
    '',
    '| pods | watch ended | relist (s) | CPU s (restart → relisted) | peak RSS MB | keys deleted | keys written |',
    '|---|---|---|---|---|---|---|',
    `| ${r.pods} | ${r.cause} | ${r.seconds} | ${r.cpu_s} | ${r.peak_rss_mb} | ${r.keys_deleted} | ${r.keys_written} |`,
  ];
}

function round2(x: number): string {
  return String(Math.round(x * 100) / 100);
}

function steadyRow(label: string, s: SteadyFigures): string {
  return `| ${label} | ${s.registered_keys} | ${s.window_seconds} | ${s.etcd_requests_per_s} | ${s.etcd_stream_messages_per_s} | ${s.cpu_percent} | ${s.rss_mb} | ${s.heap_used_mb} |`;
}

export function markdownReport(result: BenchResult): string {
  const series: Series[] = result.latency_runs.flatMap((run) => [
    { label: `registration @${run.target_rate}/s`, samples: run.registrationSamples },
    { label: `deregistration @${run.target_rate}/s`, samples: run.deregistrationSamples },
  ]);
  const b = result.burst;
  const s = result.steady;
  return [
    `# etcd-registrar benchmarks (${result.size})`,
    '',
    `Run ${result.started_at}, ${result.duration_s} s, on ${result.machine.cpus} CPUs, ${result.machine.platform}, Node ${result.machine.node}; controller Node tuning: ${result.controller_node_options}.`,
    '',
    '## Latency',
    '',
    "Registration: the API server's acknowledgement of the bench's status update to Ready (KWOK runs: pod seen Ready by the bench's pod watch) → PUT seen by an independent etcd watch.",
    "Deregistration: the API server's acknowledgement of the DELETE that set the deletionTimestamp → DELETE seen by the etcd watch.",
    '',
    '| figure | target rate (/s) | achieved rate (/s) | samples | p50 ms | p95 ms | p99 ms | max ms | missing |',
    '|---|---|---|---|---|---|---|---|---|',
    ...result.latency_runs.flatMap((run) => [
      latencyRow(run.driver === 'bench' ? 'registration (Ready set by the bench)' : 'registration', run.target_rate, run.registration),
      latencyRow(run.driver === 'bench' ? 'deregistration (unscheduled pod deleted)' : 'deregistration', run.target_rate, run.deregistration),
    ]),
    '',
    cdfSvg(series),
    '',
    ...decompositionSection(result),
    ...contentTypeSection(result),
    '## Burst',
    '',
    ...(b.content_type === undefined ? [] : [`The ${b.content_type} side (the shipped default); the JSON side is in the table above.`, '']),
    '| pods | Ready at resume | last Ready → last key (s) | Ready spread (s) | keys/s | raw batched-txn keys/s | ratio | missing |',
    "|---|---|---|---|---|---|---|---|",
    `| ${b.pods} | ${b.ready_at_resume} | ${b.seconds} | ${b.ready_spread_seconds} | ${b.keys_per_s} | ${b.raw_keys_per_s} | ${b.ratio} | ${b.missing} |`,
    '',
    '| controller CPU s (resume → last key) | events replayed | MB replayed | replay to an idle client (s) | intake floor keys/s | ratio to the intake floor | status updates/s while paused |',
    '|---|---|---|---|---|---|---|',
    `| ${b.controller_cpu_s} | ${b.replay_events} | ${b.replay_mb} | ${b.replay_seconds} | ${b.intake_floor_keys_per_s} | ${b.ratio_to_intake_floor} | ${b.status_updates_per_s} |`,
    '',
    '## Full reconcile (periodic, nothing to change)',
    '',
    '| pods | our keys | foreign keys | mean ms | CPU ms per reconcile | reconciles | RSS MB | heap used MB |',
    '|---|---|---|---|---|---|---|---|',
    ...result.reconcile.map((r) => `| ${r.pods} | ${r.keys} | ${r.foreign_keys} | ${r.ms} | ${r.cpu_ms} | ${r.reconciles} | ${r.rss_mb} | ${r.heap_used_mb} |`),
    '',
    '## Restart',
    '',
    '| pods | start → ready (s) | first reconcile (ms) | keys deleted | keys written |',
    '|---|---|---|---|---|',
    `| ${result.restart.pods} | ${result.restart.seconds} | ${result.restart.reconcile_ms} | ${result.restart.keys_deleted} | ${result.restart.keys_written} |`,
    ...expiryRelistSection(result.expiry_relist),
    '',
    '## Steady state (no churn)',
    '',
    ...(s.node_defaults === undefined ? [] : ["One controller after the other, the same time from start to window and the same window: as shipped, and with Node's default V8 settings (no --max-semi-space-size, no --optimize-for-size).", '']),
    '| Node settings | registered keys | window (s) | etcd requests/s | etcd stream messages/s | controller CPU % | controller RSS MB | heap used MB |',
    '|---|---|---|---|---|---|---|---|',
    steadyRow(`as shipped (${result.controller_node_options})`, s),
    ...(s.node_defaults === undefined ? [] : [steadyRow("Node's defaults", s.node_defaults)]),
    ...(s.node_defaults_in_limit === undefined ? [] : [steadyRow(`Node's defaults under the chart's ${s.node_defaults_in_limit.memory_limit_mb} MiB memory limit (a cgroup, as in a pod)`, s.node_defaults_in_limit)]),
    '',
    ...(result.notes.length > 0 ? ['## Notes', '', ...result.notes.map((n) => `- ${n}`), ''] : []),
  ].join('\n');
}
