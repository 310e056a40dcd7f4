import type { Registry } from "prom-client";
import type { ExpositionWriter } from "./exposition";

/*
 * Metric families the agent keeps and renders itself: the ones every transaction report updates.
 * prom-client rebuilds a label-hash string on every observe and renders through intermediate objects,
 * which dominated the per-report cost and made scrapes of 100k series take seconds. Here a label
 * combination is formatted once, when its series are created, and its values live in plain arrays.
 * The families sit in the prom-client registry like any other metric, so the exposition keeps one
 * order and registry.metrics()/getMetricsAsJSON() still see them (through the slow `get()`).
 */

export type ExpositionFormat = "prometheus" | "openmetrics";

/** A label combination: its values in label-name order, and `name="value",...` as exposed. */
export interface LabelSet {
  readonly values: readonly string[];
  readonly text: string;
}

export function labelSet(names: readonly string[], values: readonly string[]): LabelSet {
  let text = "";
  for (let i = 0; i < names.length; i++) {
    text += `${i > 0 ? "," : ""}${names[i]}="${escapeLabelValue(values[i] ?? "")}"`;
  }
  return { values, text };
}

/** The same label set with more labels after it (e.g. `status` after the transaction labels). */
export function extendLabelSet(base: LabelSet, names: readonly string[], values: readonly string[]): LabelSet {
  const extra = labelSet(names, values);
  return { values: [...base.values, ...values], text: base.text ? `${base.text},${extra.text}` : extra.text };
}

export class CounterSeries {
  value = 0;
  /** Last update, ms since the epoch, for the series TTL. */
  touched = 0;
  constructor(readonly labels: LabelSet) {}
}

export class HistogramSeries {
  /** Observations per bucket, not cumulative; the last one is +Inf. */
  readonly counts: number[];
  sum = 0;
  count = 0;
  /** Last update, ms since the epoch, for the series TTL. */
  touched = 0;

  constructor(
    readonly labels: LabelSet,
    private readonly bounds: readonly number[],
  ) {
    this.counts = new Array<number>(bounds.length + 1).fill(0);
  }

  observe(value: number): void {
    // prom-client refused non-finite values by throwing; on the hot path they are simply not observed.
    if (!Number.isFinite(value)) return;
    const bounds = this.bounds;
    let bucket = 0;
    while (bucket < bounds.length && value > (bounds[bucket] as number)) bucket++;
    (this.counts[bucket] as number)++;
    this.sum += value;
    this.count++;
  }
}

interface FamilyOptions {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
}

/** What prom-client's registry calls on a metric; enough for it to hold and list our families. */
interface PromClientValue {
  readonly labels: Record<string, string | number>;
  readonly value: number;
  readonly metricName?: string;
}

/** A family kept by the agent. `series()` lists its live series, in creation order. */
export abstract class OwnFamily<Series> {
  readonly name: string;
  readonly help: string;
  readonly labelNames: readonly string[];
  abstract readonly type: "counter" | "histogram";
  readonly aggregator = "sum";

  constructor(
    options: FamilyOptions,
    readonly series: () => Iterable<Series>,
  ) {
    this.name = options.name;
    this.help = options.help;
    this.labelNames = options.labelNames;
  }

  /** Puts the family in the registry, after those already there. */
  register(registry: Registry): this {
    // The registry is typed for prom-client's own classes; it only calls get/reset and reads name/type.
    registry.registerMetric(this as unknown as Parameters<Registry["registerMetric"]>[0]);
    return this;
  }

  /**
   * Writes the family in either format, without a trailing newline (as prom-client renders one). Each
   * series is written whole, so a histogram's buckets, sum and count always agree; between series the
   * writer may let the event loop run, so a large family never blocks ingestion for long.
   */
  async render(format: ExpositionFormat, out: ExpositionWriter): Promise<void> {
    const { name, type } = exposedFamily(this.name, this.type, format);
    out.write(`# HELP ${name} ${escapeHelp(this.help, format)}\n# TYPE ${name} ${type}`);
    for (const series of this.series()) {
      out.write(this.samples(series));
      if (out.due()) await out.pause();
    }
  }

  /** prom-client's JSON form, for registry.getMetricsAsJSON() and the like; not used for scrapes. */
  async get(): Promise<{ name: string; help: string; type: string; aggregator: string; values: PromClientValue[] }> {
    const values: PromClientValue[] = [];
    for (const series of this.series()) this.collectValues(series, values);
    return { name: this.name, help: this.help, type: this.type, aggregator: this.aggregator, values };
  }

  /** prom-client's Registry.resetMetrics(); the agent never resets. */
  reset(): void {}

  /** The sample lines of one series, each preceded by "\n". */
  protected abstract samples(series: Series): string;

  protected abstract collectValues(series: Series, into: PromClientValue[]): void;

  protected labelObject(labels: LabelSet): Record<string, string> {
    const object: Record<string, string> = {};
    this.labelNames.forEach((label, i) => {
      object[label] = labels.values[i] ?? "";
    });
    return object;
  }
}

export class CounterFamily extends OwnFamily<CounterSeries> {
  readonly type = "counter";

  protected samples(series: CounterSeries): string {
    const labels = series.labels.text;
    return labels ? `\n${this.name}{${labels}} ${series.value}` : `\n${this.name} ${series.value}`;
  }

  protected collectValues(series: CounterSeries, into: PromClientValue[]): void {
    into.push({ labels: this.labelObject(series.labels), value: series.value });
  }
}

export class HistogramFamily extends OwnFamily<HistogramSeries> {
  readonly type = "histogram";
  /** `<name>_bucket{le="<bound>"` for each bound and +Inf, formatted once. */
  private readonly bucketPrefixes: readonly string[];
  private readonly sumPrefix: string;
  private readonly countPrefix: string;

  constructor(
    options: FamilyOptions,
    readonly bounds: readonly number[],
    series: () => Iterable<HistogramSeries>,
  ) {
    super(options, series);
    this.bucketPrefixes = [...bounds.map(String), "+Inf"].map((le) => `\n${options.name}_bucket{le="${le}"`);
    this.sumPrefix = `\n${options.name}_sum`;
    this.countPrefix = `\n${options.name}_count`;
  }

  protected samples(series: HistogramSeries): string {
    const prefixes = this.bucketPrefixes;
    const labels = series.labels.text;
    const inBucket = labels ? `,${labels}} ` : "} ";
    const inLine = labels ? `{${labels}} ` : " ";
    const counts = series.counts;
    let out = "";
    let cumulative = 0;
    for (let i = 0; i < prefixes.length; i++) {
      cumulative += counts[i] as number;
      out += `${prefixes[i]}${inBucket}${cumulative}`;
    }
    return `${out}${this.sumPrefix}${inLine}${series.sum}${this.countPrefix}${inLine}${series.count}`;
  }

  protected collectValues(series: HistogramSeries, into: PromClientValue[]): void {
    const labels = this.labelObject(series.labels);
    let cumulative = 0;
    this.bounds.forEach((le, i) => {
      cumulative += series.counts[i] as number;
      into.push({ labels: { le, ...labels }, value: cumulative, metricName: `${this.name}_bucket` });
    });
    into.push({ labels: { le: "+Inf", ...labels }, value: series.count, metricName: `${this.name}_bucket` });
    into.push({ labels, value: series.sum, metricName: `${this.name}_sum` });
    into.push({ labels, value: series.count, metricName: `${this.name}_count` });
  }
}

/**
 * A family's name and type as exposed. OpenMetrics requires a counter's samples to end in `_total`: a
 * counter named `<x>_total` becomes the OpenMetrics counter `<x>` (samples still `<x>_total`), and a
 * counter without the suffix (LeakSignal's own) is typed `unknown`, so its samples keep their names and
 * Prometheus stores the same series from either format (docs/metrics.md).
 */
export function exposedFamily(name: string, type: string, format: ExpositionFormat): { name: string; type: string } {
  if (format !== "openmetrics" || type !== "counter") return { name, type };
  return name.endsWith("_total") ? { name: name.slice(0, -"_total".length), type } : { name, type: "unknown" };
}

/** Label values escape backslash, double quote and newline, in both formats. */
export function escapeLabelValue(value: string): string {
  return /[\\"\n]/.test(value) ? value.replace(/[\\"\n]/g, (char) => (char === "\n" ? "\\n" : `\\${char}`)) : value;
}

/** HELP escapes backslash and newline; OpenMetrics also double quote. */
export function escapeHelp(help: string, format: ExpositionFormat): string {
  const special = format === "openmetrics" ? /[\\"\n]/g : /[\\\n]/g;
  return help.replace(special, (char) => (char === "\n" ? "\\n" : `\\${char}`));
}
