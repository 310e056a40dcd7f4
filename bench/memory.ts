import { readFileSync } from "node:fs";
import { coreLayout, pinSelf } from "./support/cores";
import { scrape } from "./support/metrics";
import { DEFAULT_RESULTS_DIR, machineDetails, median, printTable, writeResults } from "./support/report";
import { populateSeries } from "./support/series";
import { startAgent } from "./support/targets";

export interface MemoryOptions {
  readonly series: number;
  /** Fresh agents measured. */
  readonly runs: number;
  /** Scrapes after populating: rendering is part of what the pod must hold. */
  readonly scrapes: number;
  readonly resultsDir: string;
}

export const MEMORY_DEFAULTS: MemoryOptions = { series: 100_000, runs: 3, scrapes: 3, resultsDir: DEFAULT_RESULTS_DIR };

export interface MemoryRun {
  readonly series: number;
  readonly startMiB: number;
  readonly populatedMiB: number;
  readonly scrapedMiB: number;
  /** Highest RSS the process reached (VmHWM), scrapes included. */
  readonly peakMiB: number;
  /** (RSS after scrapes − RSS at start) / series. */
  readonly bytesPerSeries: number;
}

export interface MemoryResults {
  readonly benchmark: "memory";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: MemoryOptions;
  readonly runs: MemoryRun[];
  readonly median: MemoryRun;
  /** Peak RSS ≤ 256 MiB (the original agent's memory request). */
  readonly target: boolean;
}

/** Benchmark 4: the agent's RSS with 100k live series, and per series. */
export async function memoryBenchmark(overrides: Partial<MemoryOptions> = {}): Promise<MemoryResults> {
  const options = { ...MEMORY_DEFAULTS, ...overrides };
  const layout = coreLayout();
  pinSelf(layout);
  const runs: MemoryRun[] = [];
  for (let run = 0; run < options.runs; run++) {
    const agent = await startAgent(layout);
    try {
      const metricsPort = agent.metricsPort as number;
      await scrape(metricsPort);
      await settle();
      const start = rss(agent.pid);
      const series = await populateSeries(agent.port, metricsPort, options.series);
      await settle();
      const populated = rss(agent.pid);
      for (let i = 0; i < options.scrapes; i++) await scrape(metricsPort);
      await settle();
      const scraped = rss(agent.pid);
      runs.push({
        series,
        startMiB: mib(start.current),
        populatedMiB: mib(populated.current),
        scrapedMiB: mib(scraped.current),
        peakMiB: mib(scraped.peak),
        bytesPerSeries: Math.round((scraped.current - start.current) / series),
      });
    } finally {
      await agent.stop();
    }
  }
  const pick = (key: keyof MemoryRun) => median(runs.map((r) => r[key]));
  const medians: MemoryRun = {
    series: pick("series"),
    startMiB: pick("startMiB"),
    populatedMiB: pick("populatedMiB"),
    scrapedMiB: pick("scrapedMiB"),
    peakMiB: pick("peakMiB"),
    bytesPerSeries: pick("bytesPerSeries"),
  };
  const results: MemoryResults = {
    benchmark: "memory",
    machine: machineDetails(layout.pinned),
    options,
    runs,
    median: medians,
    target: medians.peakMiB <= 256,
  };
  printTable(`Memory: agent RSS with ${medians.series} live series (median of ${options.runs} fresh agents)`, [
    {
      "start MiB": medians.startMiB,
      "populated MiB": medians.populatedMiB,
      "after scrapes MiB": medians.scrapedMiB,
      "peak MiB": medians.peakMiB,
      "bytes/series": medians.bytesPerSeries,
    },
  ]);
  console.log(`peak <= 256 MiB: ${results.target ? "met" : "missed"}`);
  writeResults(options.resultsDir, "memory", results);
  return results;
}

/** Current and peak resident set of a process, in bytes (Linux /proc). */
function rss(pid: number): { current: number; peak: number } {
  const status = readFileSync(`/proc/${pid}/status`, "utf8");
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, "m").exec(status)?.[1] ?? Number.NaN);
  return { current: kib("VmRSS") * 1024, peak: kib("VmHWM") * 1024 };
}

function mib(bytes: number): number {
  return Math.round((bytes / 2 ** 20) * 10) / 10;
}

/** Lets the agent's garbage collector catch up before a reading. */
function settle(): Promise<void> {
  return new Promise((done) => setTimeout(done, 1000));
}

if (require.main === module) {
  memoryBenchmark().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
