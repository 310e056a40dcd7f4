import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import type { IngestResults } from "./ingest";
import { coreLayout, pinSelf } from "./support/cores";
import { probeGrpcStatus } from "./support/grpc-probe";
import { type LoadResult, runH2load } from "./support/h2load";
import { DEFAULT_RESULTS_DIR, machineDetails, median, printTable, writeResults } from "./support/report";
import { startAgent, startNoopResponder, type Target } from "./support/targets";
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
  runs: 3,
  seconds: 10,
  warmUpSeconds: 2,
  clients: 8,
  maxRate: undefined,
  resultsDir: DEFAULT_RESULTS_DIR,
};

type TargetName = "agent" | "noop";

export interface LatencyResults {
  readonly benchmark: "latency";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: LatencyOptions;
  /** Total MatchData/s offered to both targets: half the agent's maximum. */
  readonly rate: number;
  readonly runs: Record<TargetName, LoadResult[]>;
  readonly median: Record<TargetName, { p50Us: number; p99Us: number; requestsPerSecond: number }>;
  readonly p99Ratio: number;
  readonly target: boolean;
  readonly correct: boolean;
}

/** Benchmark 2: p50/p99 of MatchData at half the agent's maximum rate, agent beside the no-op responder. */
export async function latencyBenchmark(overrides: Partial<LatencyOptions> = {}): Promise<LatencyResults> {
  const options = { ...LATENCY_DEFAULTS, ...overrides };
  const maxRate = options.maxRate ?? ingestMedian(options.resultsDir);
  const rate = Math.round(maxRate / 2);
  const layout = coreLayout();
  pinSelf(layout);
  const body = grpcFrame(encodedTransaction());
  const targets: Record<TargetName, Target> = {
    agent: await startAgent(layout),
    noop: await startNoopResponder(layout),
  };
  const runs: Record<TargetName, LoadResult[]> = { agent: [], noop: [] };
  let correct = true;
  try {
    for (let run = 0; run < options.runs; run++) {
      for (const name of ["agent", "noop"] as const) {
        runs[name].push(
          await runH2load(layout, {
            port: targets[name].port,
            body,
            clients: options.clients,
            // Enough streams that a slow response never holds back the fixed rate.
            streams: 64,
            seconds: options.seconds,
            warmUpSeconds: options.warmUpSeconds,
            ratePerClient: Math.max(1, Math.round(rate / options.clients)),
            latencies: true,
          }),
        );
        const probe = await probeGrpcStatus(targets[name].port, body, 20);
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
  const medians = { agent: summary(runs.agent), noop: summary(runs.noop) };
  const p99Ratio = medians.agent.p99Us / medians.noop.p99Us;
  const results: LatencyResults = {
    benchmark: "latency",
    machine: machineDetails(layout.pinned),
    options,
    rate,
    runs,
    median: medians,
    p99Ratio,
    target: p99Ratio <= 2,
    correct:
      correct &&
      Object.values(runs)
        .flat()
        .every((r) => r.failed === 0 && r.errored === 0),
  };
  printTable(
    `Latency at ${rate} MatchData/s (half the agent's maximum of ${Math.round(maxRate)}), ${options.seconds} s x ${options.runs}`,
    (["agent", "noop"] as const).map((name) => ({
      target: name === "agent" ? "(a) agent" : "(b) no-op node:http2",
      "achieved req/s": Math.round(medians[name].requestsPerSecond),
      "p50 ms": medians[name].p50Us / 1000,
      "p99 ms": medians[name].p99Us / 1000,
      "p99 runs ms": runs[name].map((r) => ((r.p99Us ?? Number.NaN) / 1000).toFixed(2)).join(" "),
    })),
  );
  console.log(`p99 (a)/(b) = ${p99Ratio.toFixed(2)} (target <= 2: ${results.target ? "met" : "missed"})`);
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
