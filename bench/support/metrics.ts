import { get } from "node:http";

/** One scrape of the agent's /metrics. */
export interface Scrape {
  /** The exposition as text, decoded when asked for (the scraper shares its core with the load generator). */
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
          const raw = Buffer.concat(chunks);
          done({
            get body() {
              return raw.toString("utf8");
            },
            bytes: raw.length,
            series: countSeries(raw),
            ms,
          });
        });
      },
    );
    request.on("error", fail);
  });
}

/** Sample lines: the non-empty lines that are not comments (`# HELP`, `# TYPE`, `# EOF`). */
export function countSeries(body: Buffer): number {
  let series = 0;
  let start = 0;
  while (start < body.length) {
    let end = body.indexOf(10 /* \n */, start);
    if (end < 0) end = body.length;
    if (end > start && body[start] !== 35 /* # */) series++;
    start = end + 1;
  }
  return series;
}

/** The value of the first sample whose line starts with `prefix` (name and labels as exposed). */
export function sampleValue(body: string, prefix: string): number | undefined {
  const at = body.indexOf(`\n${prefix}`);
  return at < 0 ? undefined : valueOfLine(body, at + 1);
}

/** The sum of every sample whose line starts with `prefix`, e.g. a counter over all its label sets. */
export function sumSamples(body: string, prefix: string): number {
  let sum = 0;
  for (let at = body.indexOf(`\n${prefix}`); at >= 0; at = body.indexOf(`\n${prefix}`, at + 1)) {
    sum += valueOfLine(body, at + 1);
  }
  return sum;
}

/** The value of the sample line starting at `start`: what follows its last space. */
function valueOfLine(body: string, start: number): number {
  const end = body.indexOf("\n", start);
  const line = body.slice(start, end < 0 ? undefined : end);
  return Number(line.slice(line.lastIndexOf(" ") + 1));
}
