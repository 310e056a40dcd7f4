import { renameSync, writeFileSync } from "node:fs";
import { type ClientHttp2Session, type ClientHttp2Stream, connect } from "node:http2";
import { UpdatePolicyRequest, UpdatePolicyResponse } from "../src/generated/leaksignal";
import { coreLayout, pinSelf } from "./support/cores";
import { DEFAULT_RESULTS_DIR, machineDetails, median, printTable, writeResults } from "./support/report";
import { BENCH_CONFIG, startAgent } from "./support/targets";
import { grpcFrame } from "./support/transaction";

export interface FanoutOptions {
  /** Open UpdatePolicy streams, one connection each, as one proxy each. */
  readonly streams: number;
  /** Config changes measured. */
  readonly changes: number;
  readonly resultsDir: string;
}

export const FANOUT_DEFAULTS: FanoutOptions = { streams: 1_000, changes: 5, resultsDir: DEFAULT_RESULTS_DIR };

export interface FanoutResults {
  readonly benchmark: "fanout";
  readonly machine: ReturnType<typeof machineDetails>;
  readonly options: FanoutOptions;
  /** Config file rename → the new policy on every stream, per change. */
  readonly ms: number[];
  /** Config file rename → the first stream, per change (the watcher's debounce and the parse). */
  readonly firstMs: number[];
  readonly median: { readonly ms: number; readonly firstMs: number };
  readonly target: boolean;
  readonly correct: boolean;
}

const UPDATE_POLICY_PATH = "/leaksignal.Leaksignal/UpdatePolicy";

/** One proxy: its connection, its policy stream, and the policies it received. */
class PolicyStream {
  readonly policies: string[] = [];
  private readonly stream: ClientHttp2Stream;
  private buffered = Buffer.alloc(0);
  private waiter: { count: number; done: () => void } | undefined;

  constructor(
    private readonly session: ClientHttp2Session,
    apiKey: string,
  ) {
    this.stream = session.request({
      ":method": "POST",
      ":path": UPDATE_POLICY_PATH,
      "content-type": "application/grpc",
      te: "trailers",
    });
    this.stream.on("error", () => {});
    this.stream.on("data", (chunk: Buffer) => this.receive(chunk));
    const request = { apiKey, deploymentName: "", commit: "bench", semver: "0.0.0" };
    this.stream.write(grpcFrame(UpdatePolicyRequest.encode(request).finish()));
  }

  /** Resolves once `count` policies have arrived in all. */
  received(count: number): Promise<void> {
    return new Promise((done) => {
      if (this.policies.length >= count) return done();
      this.waiter = { count, done };
    });
  }

  close(): void {
    this.stream.close();
    this.session.close();
  }

  private receive(chunk: Buffer): void {
    this.buffered = Buffer.concat([this.buffered, chunk]);
    while (this.buffered.length >= 5) {
      const length = this.buffered.readUInt32BE(1);
      if (this.buffered.length < 5 + length) break;
      const response = UpdatePolicyResponse.decode(this.buffered.subarray(5, 5 + length));
      this.buffered = this.buffered.subarray(5 + length);
      this.policies.push(response.policy?.policy ?? "");
    }
    if (this.waiter && this.policies.length >= this.waiter.count) {
      const { done } = this.waiter;
      this.waiter = undefined;
      done();
    }
  }
}

/** Benchmark 5: config file change → new policy on all of 1,000 open UpdatePolicy streams. */
export async function fanoutBenchmark(overrides: Partial<FanoutOptions> = {}): Promise<FanoutResults> {
  const options = { ...FANOUT_DEFAULTS, ...overrides };
  const layout = coreLayout();
  pinSelf(layout);
  const agent = await startAgent(layout);
  const configPath = agent.configPath as string;
  const streams: PolicyStream[] = [];
  const ms: number[] = [];
  const firstMs: number[] = [];
  let correct = true;
  try {
    for (let i = 0; i < options.streams; i++) {
      const session = connect(`http://127.0.0.1:${agent.port}`);
      session.on("error", () => {});
      streams.push(new PolicyStream(session, "prod"));
    }
    await Promise.all(streams.map((stream) => stream.received(1)));
    for (let change = 1; change <= options.changes; change++) {
      const marker = `fanout-change-${change}`;
      // Written aside and renamed over, as editors and ConfigMap updates do: the agent sees one change.
      const next = `${configPath}.next`;
      writeFileSync(
        next,
        BENCH_CONFIG.replace("email: {}", `email: {}\n          ${marker}: {}`).replace(
          "    endpoints:",
          `      ${marker}:\n        - raw: "${marker}"\n    endpoints:`,
        ),
      );
      const started = performance.now();
      renameSync(next, configPath);
      let first = Number.NaN;
      await Promise.all(
        streams.map((stream) =>
          stream.received(change + 1).then(() => {
            if (Number.isNaN(first)) first = performance.now() - started;
          }),
        ),
      );
      ms.push(performance.now() - started);
      firstMs.push(first);
      correct &&= streams.every(
        (stream) => stream.policies.length === change + 1 && stream.policies[change]?.includes(marker),
      );
    }
  } finally {
    for (const stream of streams) stream.close();
    await agent.stop();
  }
  const results: FanoutResults = {
    benchmark: "fanout",
    machine: machineDetails(layout.pinned),
    options,
    ms,
    firstMs,
    median: { ms: median(ms), firstMs: median(firstMs) },
    target: median(ms) <= 1000,
    correct,
  };
  printTable(`Policy fan-out to ${options.streams} open UpdatePolicy streams (${options.changes} config changes)`, [
    {
      "to first stream ms": results.median.firstMs,
      "to all streams ms": results.median.ms,
      "all runs ms": ms.map((m) => m.toFixed(0)).join(" "),
    },
  ]);
  console.log(`within 1 s: ${results.target ? "met" : "missed"}, every stream got every policy: ${correct}`);
  writeResults(options.resultsDir, "fanout", results);
  return results;
}

if (require.main === module) {
  fanoutBenchmark().catch((error: unknown) => {
    console.error(error);
    process.exitCode = 1;
  });
}
