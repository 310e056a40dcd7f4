import { type CoreLayout, coreLayout, pinSelf } from "./support/cores";
import { probeGrpcStatus } from "./support/grpc-probe";
import { type LoadResult, runH2load } from "./support/h2load";
import { sampleValue, scrape } from "./support/metrics";
import { DEFAULT_RESULTS_DIR, machineDetails, median, medianRatio, printTable, writeResults } from "./support/report";
import { startAgent, startGrpcJsServer, startNoopResponder, type Target } from "./support/targets";
import { encodedTransaction, grpcFrame } from "./support/transaction";

export interface IngestOptions {
  readonly runs: number;
  readonly seconds: number;
  readonly warmUpSeconds: number;
  readonly clients: number;
  readonly streams: number;
  /** MatchData calls per target and run whose gRPC status is checked, sent while h2load runs. */
  readonly probeCalls: number;
  readonly resultsDir: string;
  /** Another build's dist/app/main.js, measured alongside as "(a0) baseline" (before/after comparisons). */
  readonly baselineAgent?: string | undefined;
}

export const INGEST_DEFAULTS: IngestOptions = {
  runs: 5,
  seconds: 10,
  warmUpSeconds: 2,
  clients: 8,
  streams: 32,
  probeCalls: 50,
  resultsDir: DEFAULT_RESULTS_DIR,
  baselineAgent: process.env.BENCH_BASELINE_MAIN || undefined,
};

export interface TargetRun extends LoadResult {
  readonly probedOk: number;
  readonly probed: number;
  readonly probeFailures: readonly string[];
  /** The agent only: reports it counted in leakagent_match_inbound during the run (≥ succeeded). */
  readonly counted?: number;
}

export interface IngestResults {
  readonly benchmark: "ingest";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: IngestOptions;
  readonly requestBytes: number;
  readonly runs: Record<TargetName, TargetRun[]>;
  readonly median: Record<TargetName, number>;
  /** Median server CPU per MatchData, µs. */
  readonly cpuUsPerRequest: Record<TargetName, number>;
  /** Medians over runs of the ratio within each run (see medianRatio). */
  readonly ratios: {
    readonly agentToNoop: number;
    readonly agentToGrpcJs: number;
    /** The same comparisons by server CPU per call (noop CPU / agent CPU): less moved by a busy machine. */
    readonly agentToNoopByCpu: number;
    readonly agentToGrpcJsByCpu: number;
  };
  readonly targets: { readonly agentToNoop: boolean; readonly agentToGrpcJs: boolean };
  /** Every probed call of every target answered grpc-status 0, and the agent counted every report. */
  readonly correct: boolean;
  readonly baseline?: {
    readonly main: string;
    readonly runs: TargetRun[];
    readonly median: number;
    readonly cpuUsPerRequest: number;
  };
}

export type TargetName = "agent" | "noop" | "grpcJs";

/** Benchmark 1: MatchData/s of the agent, a no-op responder and a plain grpc-js server, in the same run. */
export async function ingestBenchmark(overrides: Partial<IngestOptions> = {}): Promise<IngestResults> {
  const options = { ...INGEST_DEFAULTS, ...overrides };
  const layout = coreLayout();
  pinSelf(layout);
  const message = encodedTransaction();
  const body = grpcFrame(message);
  const targets: Record<TargetName, Target> = {
    agent: await startAgent(layout),
    noop: await startNoopResponder(layout),
    grpcJs: await startGrpcJsServer(layout),
  };
  const baselineTarget = options.baselineAgent ? await startAgent(layout, { main: options.baselineAgent }) : undefined;
  const runs: Record<TargetName, TargetRun[]> = { agent: [], noop: [], grpcJs: [] };
  const baselineRuns: TargetRun[] = [];
  try {
    for (let run = 0; run < options.runs; run++) {
      // Interleaved, so drift of a shared machine spreads over all of them.
      for (const name of ["agent", "noop", "grpcJs"] as const) {
        runs[name].push(await measure(layout, targets[name], body, options));
      }
      if (baselineTarget) baselineRuns.push(await measure(layout, baselineTarget, body, options));
    }
  } finally {
    await Promise.all([...Object.values(targets), ...(baselineTarget ? [baselineTarget] : [])].map((t) => t.stop()));
  }

  const medians = {
    agent: median(runs.agent.map((r) => r.requestsPerSecond)),
    noop: median(runs.noop.map((r) => r.requestsPerSecond)),
    grpcJs: median(runs.grpcJs.map((r) => r.requestsPerSecond)),
  };
  const rates = (name: TargetName) => runs[name].map((r) => r.requestsPerSecond);
  const cpus = (name: TargetName) => runs[name].map((r) => r.serverCpuUsPerRequest ?? Number.NaN);
  const cpuUsPerRequest = { agent: median(cpus("agent")), noop: median(cpus("noop")), grpcJs: median(cpus("grpcJs")) };
  const ratios = {
    agentToNoop: medianRatio(rates("agent"), rates("noop")),
    agentToGrpcJs: medianRatio(rates("agent"), rates("grpcJs")),
    agentToNoopByCpu: medianRatio(cpus("noop"), cpus("agent")),
    agentToGrpcJsByCpu: medianRatio(cpus("grpcJs"), cpus("agent")),
  };
  const all = Object.values(runs).flat();
  const results: IngestResults = {
    benchmark: "ingest",
    machine: machineDetails(layout.pinned),
    options,
    requestBytes: message.length,
    runs,
    median: medians,
    cpuUsPerRequest,
    ratios,
    targets: { agentToNoop: ratios.agentToNoop >= 0.7, agentToGrpcJs: ratios.agentToGrpcJs >= 1.5 },
    correct:
      all.every((r) => r.probedOk === r.probed && r.succeeded > 0 && r.failed === 0 && r.errored === 0) &&
      runs.agent.every((r) => (r.counted ?? 0) >= r.succeeded),
    ...(options.baselineAgent
      ? {
          baseline: {
            main: options.baselineAgent,
            runs: baselineRuns,
            median: median(baselineRuns.map((r) => r.requestsPerSecond)),
            cpuUsPerRequest: median(baselineRuns.map((r) => r.serverCpuUsPerRequest ?? Number.NaN)),
          },
        }
      : {}),
  };
  printIngest(results);
  writeResults(options.resultsDir, "ingest", results);
  return results;
}

async function measure(layout: CoreLayout, target: Target, body: Buffer, options: IngestOptions): Promise<TargetRun> {
  const inbound = async () =>
    target.metricsPort === undefined
      ? 0
      : (sampleValue((await scrape(target.metricsPort, "text")).body, 'leakagent_match_inbound{deployment="prod"}') ??
        0);
  const before = await inbound();
  // The sample is taken halfway through the measured phase, from the answers given under full load.
  const [load, probe] = await Promise.all([
    runH2load(layout, { port: target.port, body, ...options, serverPid: target.pid }),
    probeGrpcStatus(target.port, body, options.probeCalls, underLoadMs(options)),
  ]);
  const counted = target.metricsPort === undefined ? undefined : (await inbound()) - before - probe.calls;
  return {
    ...load,
    probedOk: probe.ok,
    probed: probe.calls,
    probeFailures: probe.failures.slice(0, 5),
    ...(counted === undefined ? {} : { counted }),
  };
}

/** When a probe started beside h2load lands halfway through its measured phase. */
export function underLoadMs(options: { readonly warmUpSeconds: number; readonly seconds: number }): number {
  return (options.warmUpSeconds + options.seconds / 2) * 1000;
}

export const INGEST_LABELS: Record<TargetName, string> = {
  agent: "(a) agent",
  noop: "(b) no-op node:http2",
  grpcJs: "(c) @grpc/grpc-js",
};

function printIngest(results: IngestResults): void {
  const row = (target: string, runs: readonly TargetRun[], median: number, cpu: number) => ({
    target,
    "median req/s": Math.round(median),
    runs: runs.map((r) => Math.round(r.requestsPerSecond)).join(" "),
    "CPU us/call": cpu,
    "grpc-status 0": `${runs.reduce((n, r) => n + r.probedOk, 0)}/${runs.reduce((n, r) => n + r.probed, 0)}`,
    "(a)/it per run": results.runs.agent
      .map((a, i) => (a.requestsPerSecond / (runs[i]?.requestsPerSecond ?? Number.NaN)).toFixed(2))
      .join(" "),
  });
  const rows = (Object.keys(INGEST_LABELS) as TargetName[]).map((name) =>
    row(INGEST_LABELS[name], results.runs[name], results.median[name], results.cpuUsPerRequest[name]),
  );
  const { baseline } = results;
  if (baseline) rows.push(row("(a0) baseline agent", baseline.runs, baseline.median, baseline.cpuUsPerRequest));
  printTable(
    `Ingest: MatchData/s, ${results.requestBytes}-byte report, h2load -c ${results.options.clients} -m ${results.options.streams}, ${results.options.seconds} s x ${results.options.runs}${results.machine.pinned ? ", server and h2load on separate cores" : ""}`,
    rows,
  );
  console.log(
    `(a)/(b) = ${results.ratios.agentToNoop.toFixed(2)} (target >= 0.7: ${results.targets.agentToNoop ? "met" : "missed"}), ` +
      `(a)/(c) = ${results.ratios.agentToGrpcJs.toFixed(2)} (target >= 1.5: ${results.targets.agentToGrpcJs ? "met" : "missed"}), ` +
      `responses correct: ${results.correct}`,
  );
  console.log(
    `by server CPU per call: (a)/(b) = ${results.ratios.agentToNoopByCpu.toFixed(2)}, (a)/(c) = ${results.ratios.agentToGrpcJsByCpu.toFixed(2)}`,
  );
}

if (require.main === module) {
  ingestBenchmark().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
