// etcd_registrar_change_stage_seconds, counted in typed arrays. Every committed key makes five
// observations (one per stage), and prom-client's observe() allocates ~400 B for each (its labels
// validated and hashed, a closure): ~2 KB per key, a tenth of what a burst of registrations
// allocates (docs/benchmarks.md). record() only adds to arrays; the series are built at scrape
// time, in the form prom-client's own histogram gives them to its registry.
import { Histogram, type Aggregator, type MetricObjectWithValues, type MetricType, type MetricValueWithName } from 'prom-client';

type StageLabel = 'stage' | 'change';

// prom-client's types declare a metric's `type` as a numeric enum that does not exist at run time;
// its metrics carry the string, which the registry prints after "# TYPE".
const HISTOGRAM = 'histogram' as unknown as MetricType;

export interface StageHistogramConfiguration<S extends string, C extends string> {
  readonly name: string;
  readonly help: string;
  readonly stages: readonly S[];
  readonly changes: readonly C[];
  /** Upper bounds, ascending (the +Inf bucket is implied). */
  readonly buckets: readonly number[];
  readonly registers: NonNullable<ConstructorParameters<typeof Histogram>[0]['registers']>;
}

/** One line of the exposition: `le` and the series' labels are kept apart, as prom-client does. */
interface ExposedValue {
  readonly labels: { le?: number | string };
  readonly sharedLabels: Record<StageLabel, string>;
  readonly value: number;
  readonly metricName: string;
  readonly exemplar: null | undefined;
}

/** A metric as the registry reads it (the fields of prom-client's MetricObjectWithValues). */
interface Exposition<V> {
  readonly name: string;
  readonly help: string;
  readonly type: MetricType;
  readonly values: V[];
  readonly aggregator: Aggregator;
  readonly collect: () => undefined;
}

/**
 * A histogram over (stage, change) whose observations go through record(). It is a prom-client
 * Histogram for its registry (name, help, type, exposition); its own observe() is not used.
 */
export class StageHistogram<S extends string, C extends string> extends Histogram<StageLabel> {
  readonly #name: string;
  readonly #help: string;
  readonly #stages: readonly S[];
  readonly #changes: readonly C[];
  readonly #bounds: readonly number[];
  /** Per series (stage-major, then change): the count of each bucket, not cumulative. */
  #buckets: Float64Array;
  #sums: Float64Array;
  #counts: Float64Array;
  /** Series in the order of their first observation (the order prom-client exposes them in). */
  #seen: number[] = [];

  constructor(config: StageHistogramConfiguration<S, C>) {
    super({ name: config.name, help: config.help, labelNames: ['stage', 'change'], buckets: [...config.buckets], registers: config.registers });
    this.#name = config.name;
    this.#help = config.help;
    this.#stages = config.stages;
    this.#changes = config.changes;
    this.#bounds = config.buckets;
    const series = config.stages.length * config.changes.length;
    this.#buckets = new Float64Array(series * config.buckets.length);
    this.#sums = new Float64Array(series);
    this.#counts = new Float64Array(series);
  }

  /** One observation; a value that is not a finite number is dropped (a metric never throws). */
  record(stage: S, change: C, seconds: number): void {
    const stageIndex = this.#stages.indexOf(stage);
    const changeIndex = this.#changes.indexOf(change);
    if (stageIndex < 0 || changeIndex < 0 || !Number.isFinite(seconds)) return;
    const series = stageIndex * this.#changes.length + changeIndex;
    if (this.#counts[series] === 0) this.#seen.push(series);
    this.#counts[series]! += 1;
    this.#sums[series]! += seconds;
    const bounds = this.#bounds;
    for (let b = 0; b < bounds.length; b++) {
      if (seconds <= bounds[b]!) {
        this.#buckets[series * bounds.length + b]! += 1;
        return;
      }
    }
  }

  override reset(): void {
    super.reset();
    // prom-client's constructor resets too, before this class's fields exist.
    if (!(#counts in this)) return;
    this.#buckets = new Float64Array(this.#buckets.length);
    this.#sums = new Float64Array(this.#sums.length);
    this.#counts = new Float64Array(this.#counts.length);
    this.#seen = [];
  }

  /** What the registry formats (prom-client calls this in place of get() when it exists). */
  async getForPromString(): Promise<Exposition<ExposedValue>> {
    return this.#metric(this.#values());
  }

  /** The same series with `le` among the labels, as prom-client's histograms answer get(). */
  override async get(): Promise<MetricObjectWithValues<MetricValueWithName<StageLabel>>> {
    const values = this.#values().map(({ labels, sharedLabels, ...rest }) => ({ ...rest, labels: { ...labels, ...sharedLabels } }));
    return this.#metric(values);
  }

  #metric<V>(values: V[]): Exposition<V> {
    // 'sum': how prom-client's cluster mode merges a histogram's series across workers.
    return { name: this.#name, help: this.#help, type: HISTOGRAM, values, aggregator: 'sum', collect: () => undefined };
  }

  #values(): ExposedValue[] {
    const values: ExposedValue[] = [];
    const bounds = this.#bounds;
    for (const series of this.#seen) {
      const sharedLabels = { stage: this.#stages[Math.floor(series / this.#changes.length)]!, change: this.#changes[series % this.#changes.length]! };
      let cumulative = 0;
      for (let b = 0; b < bounds.length; b++) {
        cumulative += this.#buckets[series * bounds.length + b]!;
        values.push({ labels: { le: bounds[b]! }, sharedLabels, value: cumulative, metricName: `${this.#name}_bucket`, exemplar: null });
      }
      const count = this.#counts[series]!;
      values.push(
        { labels: { le: '+Inf' }, sharedLabels, value: count, metricName: `${this.#name}_bucket`, exemplar: null },
        { labels: {}, sharedLabels, value: this.#sums[series]!, metricName: `${this.#name}_sum`, exemplar: undefined },
        { labels: {}, sharedLabels, value: count, metricName: `${this.#name}_count`, exemplar: undefined },
      );
    }
    return values;
  }
}
