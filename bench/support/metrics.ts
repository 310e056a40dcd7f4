import { get } from "node:http";

/** One scrape of the agent's /metrics. */
export interface Scrape {
  readonly body: string;
  readonly bytes: number;
  /** Sample lines (every bucket, sum and count is one series, as Prometheus counts them). */
  readonly series: number;
  /** From sending the request to the last byte of the body (decoding it is not counted). */
  readonly ms: number;
}

export const OPENMETRICS_ACCEPT =
  "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/**
 * Scrapes like Prometheus does (OpenMetrics first unless `format` says text), with node:http: fetch()
 * spends about as long receiving a 25 MB body as the agent takes to render it.
 */
export function scrape(port: number, format: "openmetrics" | "text" = "openmetrics"): Promise<Scrape> {
  const started = performance.now();
  return new Promise((done, fail) => {
    const request = get(
      {
        host: "127.0.0.1",
        port,
        path: "/metrics",
        headers: { accept: format === "openmetrics" ? OPENMETRICS_ACCEPT : "text/plain" },
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("error", fail);
        response.on("end", () => {
          const ms = performance.now() - started;
          if (response.statusCode !== 200) return fail(new Error(`/metrics answered ${response.statusCode}`));
          const bytes = Buffer.concat(chunks);
          const body = bytes.toString("utf8");
          done({ body, bytes: bytes.length, series: countSeries(body), ms });
        });
      },
    );
    request.on("error", fail);
  });
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
