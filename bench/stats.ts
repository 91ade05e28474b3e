// Percentiles and metric-text parsing for the benchmarks.

export interface LatencySummary {
  readonly p50_ms: number;
  readonly p95_ms: number;
  readonly p99_ms: number;
  readonly max_ms: number;
  /** Achieved transitions per second over the scenario (samples / span of the Ready or delete times). */
  readonly rate: number;
  readonly samples: number;
  /** Transitions whose key change was never seen within the scenario's wait. */
  readonly missing: number;
}

/** Nearest-rank percentile of sorted values; 0 for no values. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return 0;
  const rank = Math.min(sorted.length, Math.max(1, Math.ceil((p / 100) * sorted.length)));
  return sorted[rank - 1] ?? 0;
}

export function summarize(latencies: readonly number[], startTimes: readonly number[], missing: number): LatencySummary {
  const sorted = [...latencies].sort((a, b) => a - b);
  const span = startTimes.length > 1 ? (Math.max(...startTimes) - Math.min(...startTimes)) / 1000 : 0;
  const round = (n: number): number => Math.round(n * 10) / 10;
  return {
    p50_ms: round(percentile(sorted, 50)),
    p95_ms: round(percentile(sorted, 95)),
    p99_ms: round(percentile(sorted, 99)),
    max_ms: round(sorted.at(-1) ?? 0),
    rate: span > 0 ? round((startTimes.length - 1) / span) : 0,
    samples: sorted.length,
    missing,
  };
}

/** Sum of every sample of `name` (all label sets) in Prometheus text exposition; undefined if absent. */
export function metricSum(text: string, name: string): number | undefined {
  let sum: number | undefined;
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    if (line.startsWith(`${name}{`) || line.startsWith(`${name} `)) {
      const value = Number(line.slice(line.lastIndexOf(' ') + 1));
      if (Number.isFinite(value)) sum = (sum ?? 0) + value;
    }
  }
  return sum;
}
