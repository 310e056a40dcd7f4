import { parseArgs } from "node:util";
import { fanoutBenchmark } from "./fanout";
import { ingestBenchmark } from "./ingest";
import { latencyBenchmark } from "./latency";
import { memoryBenchmark } from "./memory";
import { scrapeBenchmark } from "./scrape";
import { writeSummary } from "./summary";
import { h2loadAvailable } from "./support/h2load";
import { DEFAULT_RESULTS_DIR } from "./support/report";

// `npm run bench [-- --only ingest,latency] [--runs N] [--results DIR]`: every benchmark in turn, each
// printing its table and writing <results>/<name>.json; then the Markdown summary of all the results in
// <results> (summary.md, for docs/performance.md). --runs sets the runs of ingest, latency, scrape and
// memory; fan-out always measures five config changes. Needs the build (dist/) and h2load (nghttp2-client).

const BENCHMARKS = ["ingest", "latency", "scrape", "memory", "fanout"] as const;
type Benchmark = (typeof BENCHMARKS)[number];

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: {
      only: { type: "string" },
      runs: { type: "string" },
      results: { type: "string", default: DEFAULT_RESULTS_DIR },
    },
  });
  const only = values.only ? values.only.split(",") : [...BENCHMARKS];
  const unknown = only.filter((name) => !(BENCHMARKS as readonly string[]).includes(name));
  if (unknown.length > 0) throw new Error(`unknown benchmark ${unknown.join(", ")}; known: ${BENCHMARKS.join(", ")}`);
  const chosen = (name: Benchmark) => only.includes(name);
  const needsH2load = chosen("ingest") || chosen("latency") || chosen("scrape");
  if (needsH2load && !h2loadAvailable()) throw new Error("h2load is missing: install nghttp2-client");
  const common = { resultsDir: values.results, ...(values.runs ? { runs: Number(values.runs) } : {}) };

  let maxRate: number | undefined;
  if (chosen("ingest")) maxRate = (await ingestBenchmark(common)).median.agent;
  if (chosen("latency")) await latencyBenchmark({ ...common, maxRate });
  if (chosen("scrape")) await scrapeBenchmark(common);
  if (chosen("memory")) await memoryBenchmark(common);
  if (chosen("fanout")) await fanoutBenchmark({ resultsDir: values.results });
  console.log(`\n${writeSummary(values.results)}`);
  console.log(`results in ${values.results}`);
}

main().catch((error: unknown) => {
  console.error(error instanceof Error ? error.message : error);
  process.exitCode = 1;
});
