import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type IngestResults, underLoadMs } from "./ingest";
import { coreLayout, pinSelf } from "./support/cores";
import { probeGrpcStatus } from "./support/grpc-probe";
import { type LoadResult, runH2load } from "./support/h2load";
import { DEFAULT_RESULTS_DIR, machineDetails, median, medianRatio, printTable, writeResults } from "./support/report";
import { startAgent, startLoadedNoopResponder, startNoopResponder, type Target } from "./support/targets";
import { encodedTransaction, grpcFrame } from "./support/transaction";

export interface LatencyOptions {
  readonly runs: number;
  readonly seconds: number;
  readonly warmUpSeconds: number;
  readonly clients: number;
  /** The agent's maximum MatchData/s; read from the ingest results when not given. */
  readonly maxRate: number | undefined;
  readonly resultsDir: string;
}

export const LATENCY_DEFAULTS: LatencyOptions = {
  // A p99 moves with every pause of a shared machine: more runs than the other benchmarks.
  runs: 5,
  seconds: 10,
  warmUpSeconds: 2,
  clients: 8,
  maxRate: undefined,
  resultsDir: DEFAULT_RESULTS_DIR,
};

type TargetName = "agent" | "noop" | "loadedNoop";
export const LATENCY_TARGETS: readonly TargetName[] = ["agent", "noop", "loadedNoop"];
export const LATENCY_LABELS: Record<TargetName, string> = {
  agent: "(a) agent",
  noop: "(b) no-op node:http2",
  loadedNoop: "(b') no-op + the agent's modules, idle",
};

export interface LatencyResults {
  readonly benchmark: "latency";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: LatencyOptions;
  /** The agent's maximum MatchData/s (the ingest benchmark's median). */
  readonly maxRate: number;
  /** Total MatchData/s offered to both targets: half the agent's maximum. */
  readonly rate: number;
  readonly runs: Record<TargetName, LoadResult[]>;
  readonly median: Record<TargetName, { p50Us: number; p99Us: number; requestsPerSecond: number }>;
  /** Median over runs of the agent's p99 / the no-op responder's p99 in the same run. */
  readonly p99Ratio: number;
  /**
   * The same for (b') / (b): what loading the agent's code, and nothing else, does to the no-op's p99; and
   * for (a) / (b'): what the agent's work adds on top.
   */
  readonly loadedToNoop: number;
  readonly agentToLoaded: number;
  readonly target: boolean;
  readonly correct: boolean;
}

/**
 * Benchmark 2: p50/p99 of MatchData at half the agent's maximum rate, agent beside the no-op responder, and
 * beside the no-op responder with the agent's modules loaded (b'), which separates the cost of a larger heap
 * (longer garbage collections) from the cost of the agent's work.
 */
export async function latencyBenchmark(overrides: Partial<LatencyOptions> = {}): Promise<LatencyResults> {
  const options = { ...LATENCY_DEFAULTS, ...overrides };
  const maxRate = options.maxRate ?? ingestMedian(options.resultsDir);
  // h2load paces each client: the offered rate is what the clients' whole rates add up to.
  const ratePerClient = Math.max(1, Math.round(maxRate / 2 / options.clients));
  const rate = ratePerClient * options.clients;
  const layout = coreLayout();
  pinSelf(layout);
  const body = grpcFrame(encodedTransaction());
  const targets: Record<TargetName, Target> = {
    agent: await startAgent(layout),
    noop: await startNoopResponder(layout),
    loadedNoop: await startLoadedNoopResponder(layout),
  };
  const runs: Record<TargetName, LoadResult[]> = { agent: [], noop: [], loadedNoop: [] };
  let correct = true;
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const name of LATENCY_TARGETS) {
        const [load, probe] = await Promise.all([
          runH2load(layout, {
            port: targets[name].port,
            body,
            clients: options.clients,
            // Enough streams that a slow response never holds back the fixed rate.
            streams: 64,
            seconds: options.seconds,
            warmUpSeconds: options.warmUpSeconds,
            ratePerClient,
            latencies: true,
          }),
          // A sample of the answers given at this rate (20 calls among ~100k hardly move a percentile).
          probeGrpcStatus(targets[name].port, body, 20, underLoadMs(options)),
        ]);
        runs[name].push(load);
        correct &&= probe.ok === probe.calls;
      }
    }
  } finally {
    await Promise.all(Object.values(targets).map((target) => target.stop()));
  }
  const summary = (results: LoadResult[]) => ({
    p50Us: median(results.map((r) => r.p50Us ?? Number.NaN)),
    p99Us: median(results.map((r) => r.p99Us ?? Number.NaN)),
    requestsPerSecond: median(results.map((r) => r.requestsPerSecond)),
  });
  const medians = { agent: summary(runs.agent), noop: summary(runs.noop), loadedNoop: summary(runs.loadedNoop) };
  // Each run measures the three targets one after another: ratios within a run, their median over runs.
  const p99s = (name: TargetName) => runs[name].map((r) => r.p99Us ?? Number.NaN);
  const p99Ratio = medianRatio(p99s("agent"), p99s("noop"));
  const loadedToNoop = medianRatio(p99s("loadedNoop"), p99s("noop"));
  const agentToLoaded = medianRatio(p99s("agent"), p99s("loadedNoop"));
  const results: LatencyResults = {
    benchmark: "latency",
    machine: machineDetails(layout.pinned),
    options,
    maxRate,
    rate,
    runs,
    median: medians,
    p99Ratio,
    loadedToNoop,
    agentToLoaded,
    target: p99Ratio <= 2,
    correct:
      correct &&
      Object.values(runs)
        .flat()
        .every((r) => r.failed === 0 && r.errored === 0),
  };
  printTable(
    `Latency at ${rate} MatchData/s (half the agent's maximum of ${Math.round(maxRate)}), ${options.seconds} s x ${options.runs}`,
    LATENCY_TARGETS.map((name) => ({
      target: LATENCY_LABELS[name],
      "achieved req/s": Math.round(medians[name].requestsPerSecond),
      "p50 ms": medians[name].p50Us / 1000,
      "p99 ms": medians[name].p99Us / 1000,
      "p99 runs ms": runs[name].map((r) => ((r.p99Us ?? Number.NaN) / 1000).toFixed(2)).join(" "),
    })),
  );
  const perRun = p99s("agent").map((p99, i) => (p99 / (p99s("noop")[i] ?? Number.NaN)).toFixed(2));
  console.log(
    `p99 (a)/(b) = ${p99Ratio.toFixed(2)}, median of the runs' ${perRun.join(" ")} (target <= 2: ${results.target ? "met" : "missed"}); ` +
      `(b')/(b) = ${loadedToNoop.toFixed(2)}, (a)/(b') = ${agentToLoaded.toFixed(2)}`,
  );
  writeResults(options.resultsDir, "latency", results);
  return results;
}

function ingestMedian(resultsDir: string): number {
  const path = join(resultsDir, "ingest.json");
  if (!existsSync(path)) throw new Error(`no maximum rate given and no ${path}: run the ingest benchmark first`);
  return (JSON.parse(readFileSync(path, "utf8")) as IngestResults).median.agent;
}

if (require.main === module) {
  latencyBenchmark().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
