import { type Metric, type MetricObject, Registry } from "prom-client";
import { type ExpositionFormat, escapeHelp, escapeLabelValue, exposedFamily, OwnFamily } from "./families";

export type { ExpositionFormat };

export const CONTENT_TYPES: Readonly<Record<ExpositionFormat, string>> = {
  prometheus: Registry.PROMETHEUS_CONTENT_TYPE,
  openmetrics: Registry.OPENMETRICS_CONTENT_TYPE,
};

/**
 * OpenMetrics when the scraper's Accept ranks it at least as high as plain text (as Prometheus does),
 * else the Prometheus text format 0.0.4.
 */
export function negotiateFormat(accept: string | undefined): ExpositionFormat {
  if (!accept) return "prometheus";
  let openMetrics = 0;
  let text = 0;
  for (const range of accept.split(",")) {
    const params = range.split(";");
    const type = params[0]?.trim().toLowerCase();
    let quality = 1;
    for (let i = 1; i < params.length; i++) {
      const param = params[i]?.trim() ?? "";
      if (param.startsWith("q=")) quality = Number(param.slice(2)) || 0;
    }
    if (type === "application/openmetrics-text") openMetrics = Math.max(openMetrics, quality);
    else if (type === "text/plain" || type === "text/*" || type === "*/*") text = Math.max(text, quality);
  }
  return openMetrics > 0 && openMetrics >= text ? "openmetrics" : "prometheus";
}

/** Text is encoded in pieces of about this many characters. */
const PIECE_CHARS = 64 * 1024;
/** How long rendering runs before it lets the event loop (ingestion) have a turn. */
const SLICE_MS = 10;
/** The clock is read once per this many writes. */
const WRITES_PER_CLOCK_CHECK = 64;

/**
 * Collects an exposition as UTF-8 pieces of ~64 KiB rather than one string: a 100k-series exposition is
 * ~25 MB, and one string that size costs a long flattening pass and twice the memory before it is sent.
 */
export class ExpositionWriter {
  private readonly pieces: Buffer[] = [];
  private pending = "";
  private writes = 0;
  private sliceStarted = performance.now();

  write(text: string): void {
    this.pending += text;
    if (this.pending.length >= PIECE_CHARS) this.flush();
  }

  /** True once this slice of rendering has run for SLICE_MS. */
  due(): boolean {
    if (++this.writes % WRITES_PER_CLOCK_CHECK !== 0) return false;
    return performance.now() - this.sliceStarted >= SLICE_MS;
  }

  /** Lets queued I/O run (setImmediate comes after it), then starts a new slice. */
  async pause(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.sliceStarted = performance.now();
  }

  finish(): Buffer[] {
    this.flush();
    return this.pieces;
  }

  private flush(): void {
    if (this.pending === "") return;
    this.pieces.push(Buffer.from(this.pending, "utf8"));
    this.pending = "";
  }
}

/**
 * Every family of the registry in its order: the agent's own families (families.ts) render themselves,
 * prom-client's through prom-client (text) or from their values (OpenMetrics).
 *
 * prom-client's own OpenMetrics mode is not used: it would expose LeakSignal's un-suffixed counters as
 * `<name>_total`, a different series in Prometheus than the text format gives, and it renames the
 * registry's `_total` counters in place for later scrapes (see exposedFamily).
 */
export async function renderMetrics(registry: Registry, format: ExpositionFormat): Promise<Buffer[]> {
  const out = new ExpositionWriter();
  // Text separates families by a blank line; OpenMetrics does not, and ends with # EOF.
  const separator = format === "openmetrics" ? "\n" : "\n\n";
  let first = true;
  for (const metric of registry.getMetricsAsArray() as unknown[]) {
    if (!first) out.write(separator);
    first = false;
    if (metric instanceof OwnFamily) await metric.render(format, out);
    else if (format === "prometheus") out.write(await registry.getSingleMetricAsString((metric as MetricObject).name));
    else out.write(await renderOpenMetricsFamily(metric as Metric));
  }
  out.write(format === "openmetrics" ? "\n# EOF\n" : "\n");
  return out.finish();
}

/** One prom-client family in OpenMetrics 1.0, from its values. */
async function renderOpenMetricsFamily(metric: Metric): Promise<string> {
  const family = await metric.get();
  // prom-client's typings say enum, its runtime says "counter", "gauge", ...
  const { name, type } = exposedFamily(family.name, String(family.type), "openmetrics");
  let out = `# HELP ${name} ${escapeHelp(family.help, "openmetrics")}\n# TYPE ${name} ${type}`;
  for (const sample of family.values as { metricName?: string; labels: object; value: number }[]) {
    let labels = "";
    for (const [label, value] of Object.entries(sample.labels)) {
      const pair = `${label}="${escapeLabelValue(labelValue(value))}"`;
      labels += labels ? `,${pair}` : pair;
    }
    out += `\n${sample.metricName ?? family.name}${labels ? `{${labels}}` : ""} ${number(sample.value)}`;
  }
  return out;
}

function labelValue(value: unknown): string {
  return typeof value === "number" ? number(value) : String(value);
}

function number(value: number): string {
  if (Number.isNaN(value)) return "NaN";
  if (value === Number.POSITIVE_INFINITY) return "+Inf";
  if (value === Number.NEGATIVE_INFINITY) return "-Inf";
  return String(value);
}
