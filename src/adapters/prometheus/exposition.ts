import { Registry } from "prom-client";

export type ExpositionFormat = "prometheus" | "openmetrics";

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

export function renderMetrics(registry: Registry, format: ExpositionFormat): Promise<string> {
  return format === "openmetrics" ? renderOpenMetrics(registry) : registry.metrics();
}

/**
 * OpenMetrics 1.0 from the registry's values. prom-client's own OpenMetrics mode is not used: it would
 * expose LeakSignal's un-suffixed counters as `<name>_total`, a different series in Prometheus than
 * the text format gives, and it renames the registry's `_total` counters in place for later scrapes.
 * Here a counter named `<x>_total` becomes the OpenMetrics counter `<x>` (samples still `<x>_total`),
 * and a counter without the suffix is typed `unknown`, so every sample keeps the name it has in text.
 */
async function renderOpenMetrics(registry: Registry): Promise<string> {
  const families = await registry.getMetricsAsJSON();
  let out = "";
  for (const family of families) {
    // prom-client's typings say enum, its runtime says "counter", "gauge", ...
    let type = String(family.type);
    let name = family.name;
    if (type === "counter") {
      if (name.endsWith("_total")) name = name.slice(0, -"_total".length);
      else type = "unknown";
    }
    out += `# HELP ${name} ${escapeText(family.help)}\n# TYPE ${name} ${type}\n`;
    for (const sample of family.values as { metricName?: string; labels: object; value: number }[]) {
      let labels = "";
      for (const [label, value] of Object.entries(sample.labels)) {
        const pair = `${label}="${escapeText(labelValue(value))}"`;
        labels += labels ? `,${pair}` : pair;
      }
      out += `${sample.metricName ?? family.name}${labels ? `{${labels}}` : ""} ${number(sample.value)}\n`;
    }
  }
  return `${out}# EOF\n`;
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

/** OpenMetrics escapes backslash, newline and double quote in both label values and help. */
function escapeText(text: string): string {
  return text.replace(/[\\\n"]/g, (char) => (char === "\n" ? "\\n" : `\\${char}`));
}
