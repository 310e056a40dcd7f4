import { coreLayout, pinSelf } from "./support/cores";
import { probeGrpcStatus } from "./support/grpc-probe";
import { runH2load } from "./support/h2load";
import { type Scrape, scrape } from "./support/metrics";
import { DEFAULT_RESULTS_DIR, machineDetails, median, medianRatio, printTable, writeResults } from "./support/report";
import { populateSeries } from "./support/series";
import { startAgent, type Target } from "./support/targets";
import { encodedTransaction, grpcFrame } from "./support/transaction";

export interface ScrapeOptions {
  /** Live series counts at which /metrics is rendered; ingest is measured at the last one. */
  readonly seriesLevels: readonly number[];
  /** Scrapes per format and level. */
  readonly scrapes: number;
  /** Alternating runs of ingest without and with scrapes. */
  readonly runs: number;
  readonly seconds: number;
  readonly scrapeIntervalSeconds: number;
  readonly clients: number;
  readonly streams: number;
  readonly resultsDir: string;
}

export const SCRAPE_DEFAULTS: ScrapeOptions = {
  seriesLevels: [10_000, 100_000],
  scrapes: 5,
  runs: 3,
  seconds: 20,
  scrapeIntervalSeconds: 5,
  clients: 8,
  streams: 32,
  resultsDir: DEFAULT_RESULTS_DIR,
};

type Format = "openmetrics" | "text";

export interface RenderResult {
  readonly format: Format;
  readonly series: number;
  readonly bytes: number;
  /** Median scrape time, request to last byte. */
  readonly ms: number;
  readonly usPerLine: number;
  /** Longest event-loop stall during any of these scrapes of an otherwise idle agent. */
  readonly stallMs: number;
}

export interface ScrapeResults {
  readonly benchmark: "scrape";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: ScrapeOptions;
  readonly render: RenderResult[];
  readonly ingest: {
    /** Fewest series any scrape under load returned: the live series the load ran beside. */
    readonly series: number;
    readonly withoutScrapes: number[];
    readonly withScrapes: number[];
    /** Median over runs of with / without (each run measures without, then with). */
    readonly ratio: number;
    /** Longest event-loop stall during any scrape under load (from its request to its last byte). */
    readonly stallDuringScrapesMs: number;
    /** Longest event-loop stall over the runs without scrapes: what the load alone causes. */
    readonly stallWithoutScrapesMs: number;
    readonly scrapesUnderLoad: number;
  };
  readonly targets: { readonly usPerLine: boolean; readonly ingestRatio: boolean; readonly stall: boolean };
  readonly correct: boolean;
}

/** Benchmark 3: /metrics at 10k and 100k live series, and ingest while Prometheus scrapes every 5 s. */
export async function scrapeBenchmark(overrides: Partial<ScrapeOptions> = {}): Promise<ScrapeResults> {
  const options = { ...SCRAPE_DEFAULTS, ...overrides };
  const layout = coreLayout();
  pinSelf(layout);
  const agent = await startAgent(layout, { monitorEventLoop: true });
  const metricsPort = agent.metricsPort as number;
  const render: RenderResult[] = [];
  const body = grpcFrame(encodedTransaction());
  let ingest: ScrapeResults["ingest"];
  let correct = true;
  try {
    for (const level of options.seriesLevels) {
      await populateSeries(agent.port, metricsPort, level);
      render.push(...(await measureRender(agent, options.scrapes)));
    }
    const withoutScrapes: number[] = [];
    const withScrapes: number[] = [];
    const quietStalls: number[] = [];
    const underLoad: ScrapeUnderLoad[] = [];
    for (let run = 0; run < options.runs; run++) {
      const load = { port: agent.port, body, ...options, warmUpSeconds: 1 };
      await agent.eventLoopStall();
      const quiet = await runH2load(layout, load);
      quietStalls.push(await agent.eventLoopStall());
      withoutScrapes.push(quiet.requestsPerSecond);
      const scraped = await whileScraping(agent, options.scrapeIntervalSeconds, () => runH2load(layout, load));
      withScrapes.push(scraped.result.requestsPerSecond);
      underLoad.push(...scraped.scrapes);
      correct &&= quiet.failed + quiet.errored + scraped.result.failed + scraped.result.errored === 0;
    }
    const probe = await probeGrpcStatus(agent.port, body, 20);
    correct &&= probe.ok === probe.calls;
    ingest = {
      series: Math.min(...underLoad.map((s) => s.series)),
      withoutScrapes,
      withScrapes,
      ratio: medianRatio(withScrapes, withoutScrapes),
      stallDuringScrapesMs: Math.max(...underLoad.map((s) => s.stallMs)),
      stallWithoutScrapesMs: Math.max(...quietStalls),
      scrapesUnderLoad: underLoad.length,
    };
  } finally {
    await agent.stop();
  }
  const results: ScrapeResults = {
    benchmark: "scrape",
    machine: machineDetails(layout.pinned),
    options,
    render,
    ingest,
    targets: {
      usPerLine: render.every((r) => r.usPerLine <= 2),
      ingestRatio: ingest.ratio >= 0.9,
      stall: Math.max(ingest.stallDuringScrapesMs, ...render.map((r) => r.stallMs)) <= 100,
    },
    correct:
      correct &&
      render.every((r, i) => r.series >= (options.seriesLevels[Math.floor(i / 2)] ?? 0)) &&
      ingest.scrapesUnderLoad > 0 &&
      ingest.series >= (options.seriesLevels[options.seriesLevels.length - 1] ?? 0),
  };
  printScrape(results);
  writeResults(options.resultsDir, "scrape", results);
  return results;
}

/** Both formats, scrape by scrape in turn, so that neither is measured in a quieter or busier moment. */
async function measureRender(agent: Target, count: number): Promise<RenderResult[]> {
  const port = agent.metricsPort as number;
  const formats: readonly Format[] = ["openmetrics", "text"];
  const samples = new Map(formats.map((format) => [format, { scrapes: [] as Scrape[], stalls: [] as number[] }]));
  for (const format of formats) await scrape(port, format); // warm
  for (let i = 0; i < count; i++) {
    for (const [format, { scrapes, stalls }] of samples) {
      await agent.eventLoopStall();
      scrapes.push(await scrape(port, format));
      stalls.push(await agent.eventLoopStall());
    }
  }
  return [...samples].map(([format, { scrapes, stalls }]) => {
    const ms = median(scrapes.map((s) => s.ms));
    const lines = median(scrapes.map((s) => s.series));
    return {
      format,
      series: lines,
      bytes: median(scrapes.map((s) => s.bytes)),
      ms,
      usPerLine: (ms * 1000) / lines,
      stallMs: Math.max(...stalls),
    };
  });
}

interface ScrapeUnderLoad {
  readonly series: number;
  readonly ms: number;
  /** The longest event-loop stall from the scrape's request to its last byte. */
  readonly stallMs: number;
}

/** Runs `work` while scraping every `intervalSeconds`, as Prometheus would; each scrape with its stall. */
async function whileScraping<T>(
  agent: Target,
  intervalSeconds: number,
  work: () => Promise<T>,
): Promise<{ result: T; scrapes: ScrapeUnderLoad[] }> {
  const port = agent.metricsPort as number;
  const scrapes: ScrapeUnderLoad[] = [];
  let scraping = Promise.resolve();
  const tick = () => {
    scraping = scraping.then(async () => {
      await agent.eventLoopStall();
      const { series, ms } = await scrape(port);
      scrapes.push({ series, ms, stallMs: await agent.eventLoopStall() });
    });
  };
  const timer = setInterval(tick, intervalSeconds * 1000);
  try {
    const result = await work();
    return { result, scrapes };
  } finally {
    clearInterval(timer);
    await scraping;
  }
}

function printScrape(results: ScrapeResults): void {
  printTable(
    "Scrape: /metrics rendering on an idle agent (median of scrapes)",
    results.render.map((r) => ({
      format: r.format,
      series: r.series,
      "size MiB": r.bytes / 2 ** 20,
      "scrape ms": r.ms,
      "us/line": r.usPerLine,
      "max stall ms": r.stallMs,
    })),
  );
  const { ingest } = results;
  printTable(`Ingest at ${ingest.series} series, scraped every ${results.options.scrapeIntervalSeconds} s or not`, [
    {
      "without scrapes req/s": Math.round(median(ingest.withoutScrapes)),
      "with scrapes req/s": Math.round(median(ingest.withScrapes)),
      ratio: ingest.ratio,
      scrapes: ingest.scrapesUnderLoad,
      "max stall during scrapes ms": ingest.stallDuringScrapesMs,
      "max stall without scrapes ms": ingest.stallWithoutScrapesMs,
    },
  ]);
  const verdict = (met: boolean) => (met ? "met" : "missed");
  console.log(
    `<= 2 us/line: ${verdict(results.targets.usPerLine)}, with/without >= 0.9: ${verdict(results.targets.ingestRatio)}, ` +
      `no stall > 100 ms: ${verdict(results.targets.stall)}, correct: ${results.correct}`,
  );
}

if (require.main === module) {
  scrapeBenchmark().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
