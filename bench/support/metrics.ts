/** One scrape of the agent's /metrics. */
export interface Scrape {
  readonly body: string;
  readonly bytes: number;
  /** Sample lines (every bucket, sum and count is one series, as Prometheus counts them). */
  readonly series: number;
  /** From sending the request to the last byte of the body. */
  readonly ms: number;
}

export const OPENMETRICS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/** Scrapes like Prometheus does (OpenMetrics first unless `format` says text). */
export async function scrape(port: number, format: "openmetrics" | "text" = "openmetrics"): Promise<Scrape> {
  const started = performance.now();
  const response = await fetch(`http://127.0.0.1:${port}/metrics`, {
    headers: { accept: format === "openmetrics" ? OPENMETRICS_ACCEPT : "text/plain" },
  });
  const body = await response.text();
  const ms = performance.now() - started;
  if (response.status !== 200) throw new Error(`/metrics answered ${response.status}`);
  return { body, bytes: Buffer.byteLength(body), series: countSeries(body), ms };
}

export function countSeries(body: string): number {
  let series = 0;
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf("\n", start);
    if (end < 0) end = body.length;
    if (end > start && body.charCodeAt(start) !== 35 /* # */) series++;
    start = end + 1;
  }
  return series;
}

/** The value of the first sample whose line starts with `prefix` (name and labels as exposed). */
export function sampleValue(body: string, prefix: string): number | undefined {
  const at = body.indexOf(`\n${prefix}`);
  if (at < 0) return undefined;
  const end = body.indexOf("\n", at + 1);
  const line = body.slice(at + 1, end < 0 ? undefined : end);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}
