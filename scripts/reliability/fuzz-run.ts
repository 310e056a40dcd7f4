import { type ClientHttp2Session, connect as connectH2 } from "node:http2";
import { AgentProcess } from "../../tests/support/agent-process";
import { type FuzzTarget, INPUT_KINDS, type InputKind } from "./fuzz-inputs";
import { Rng } from "./rng";
import { grpcPing, httpGet, rssBytes } from "./wire";

export interface FuzzOptions {
  /** Inputs to send (stops earlier when `seconds` run out). */
  readonly count: number;
  readonly seconds: number;
  readonly seed: number;
  /** Inputs in flight at once. */
  readonly concurrency: number;
  /** Inputs between two checks that the agent is alive and serving. */
  readonly batchSize: number;
  /** Only the input kinds whose name contains one of these (case-insensitive); all when empty. */
  readonly kinds?: readonly string[];
  readonly onBatch?: (progress: { sent: number; elapsedSeconds: number; rssBytes: number | undefined }) => void;
}

export const FUZZ_DEFAULTS = { count: 100_000, seconds: 600, concurrency: 48, batchSize: 5_000 } as const;

export interface FuzzReport {
  readonly seed: number;
  readonly inputs: number;
  readonly seconds: number;
  readonly inputsPerSecond: number;
  /** The agent process exited (or stopped answering) during the run: must be 0. */
  readonly crashes: number;
  /** Checks after each batch: alive, gRPC Ping echoed, GET / and GET /metrics answered 200. */
  readonly healthChecks: { readonly passed: number; readonly failed: readonly string[] };
  /** Valid calls interleaved with the bad input that got a wrong answer: must be 0. */
  readonly validCallFailures: number;
  readonly rssBytes: { readonly before: number | undefined; readonly after: number | undefined };
  /** Samples in the agent's /metrics exposition: growth here is label cardinality, not a leak. */
  readonly metricSamples: { readonly before: number; readonly after: number };
  /** Error-level lines the agent logged. */
  readonly agentErrors: readonly string[];
  /** How the agent shut down after the run (SIGTERM): exit code 0 expected. */
  readonly exitCode: number | null;
  /** Outcome counts per input kind. */
  readonly byKind: Record<string, { inputs: number; meanMs: number; outcomes: Record<string, number> }>;
}

/** Two deployments: one opened by its name (as the original agent), one by a secret api key. */
const FUZZ_CONFIG = `
policies:
  fuzz:
    categories:
      email:
        - regex: "[a-z]+@[a-z]+\\\\.com"
    endpoints:
      - matches: "**"
        config:
          email: {}
  keyed:
    endpoints:
      - matches: "**"
api_keys:
  keyed: [fuzz-secret-key-0123456789]
`;
const CREDENTIALS = ["fuzz", "fuzz-secret-key-0123456789"];
/** Small, so bodies over the limit are cheap to send. */
const MAX_MESSAGE_BYTES = 64 * 1024;

/** Starts the built agent, throws `count` malformed inputs at it and reports how it answered and whether it lived. */
export async function runFuzz(options: FuzzOptions): Promise<FuzzReport> {
  const agent = await AgentProcess.serving({
    config: FUZZ_CONFIG,
    env: { LS_MAX_MESSAGE_BYTES: String(MAX_MESSAGE_BYTES), LS_LOG_LEVEL: "info" },
  });
  const pid = agent.child.pid ?? 0;
  const sessions = new SessionPool(agent.ingestionPort, 4);
  const target: FuzzTarget = {
    port: agent.ingestionPort,
    session: (rng) => sessions.get(rng.int(4)),
    freshSession: () => {
      const session = connectH2(`http://127.0.0.1:${agent.ingestionPort}`);
      session.on("error", () => {});
      return session;
    },
    credentials: CREDENTIALS,
    maxMessageBytes: MAX_MESSAGE_BYTES,
  };
  const byKind: FuzzReport["byKind"] = {};
  const failedChecks: string[] = [];
  let passedChecks = 0;
  let validCallFailures = 0;
  let crashes = 0;
  let sent = 0;
  const started = Date.now();
  const deadline = started + options.seconds * 1000;
  const rssBefore = rssBytes(pid);
  const samplesBefore = countSamples(await agent.metrics());
  const kinds = INPUT_KINDS.filter(
    (kind) => !options.kinds?.length || options.kinds.some((k) => kind.name.toLowerCase().includes(k.toLowerCase())),
  );
  if (kinds.length === 0) throw new Error(`no input kind matches ${options.kinds?.join(", ")}`);
  const totalWeight = kinds.reduce((sum, kind) => sum + kind.weight, 0);

  const record = (kind: InputKind, outcome: string, ms: number) => {
    const entry = byKind[kind.name] ?? { inputs: 0, meanMs: 0, outcomes: {} };
    byKind[kind.name] = entry;
    entry.inputs++;
    entry.meanMs += (ms - entry.meanMs) / entry.inputs;
    entry.outcomes[outcome] = (entry.outcomes[outcome] ?? 0) + 1;
    if (outcome.startsWith("FAILED")) validCallFailures++;
  };

  const runInput = async (index: number) => {
    const rng = Rng.forInput(options.seed, index);
    const kind = pickKind(rng, kinds, totalWeight);
    let outcome: string;
    const start = performance.now();
    let timer: NodeJS.Timeout | undefined;
    // A guard on the fuzzer itself: no input may hold a worker for long, whatever the agent does.
    const hung = new Promise<string>((resolve) => {
      timer = setTimeout(() => resolve(`input ${index} hung (fuzzer gave up after 15 s)`), 15_000);
    });
    try {
      outcome = await Promise.race([kind.run(rng, target), hung]);
    } catch (error) {
      outcome = `client error: ${error instanceof Error ? error.message : String(error)}`;
    } finally {
      clearTimeout(timer);
    }
    record(kind, outcome, performance.now() - start);
  };

  try {
    while (sent < options.count && Date.now() < deadline && crashes === 0) {
      const end = Math.min(options.count, sent + options.batchSize);
      let next = sent;
      const worker = async () => {
        while (next < end && Date.now() < deadline && !agentFailing(agent)) await runInput(next++);
      };
      await Promise.all(Array.from({ length: options.concurrency }, worker));
      sent = next;
      const problem = await healthCheck(agent);
      if (problem === undefined) passedChecks++;
      else {
        failedChecks.push(`after ${sent} inputs: ${problem}`);
        // An agent that logged an uncaught exception is on its way out: give it time to exit.
        await Promise.race([agent.exited, new Promise((resolve) => setTimeout(resolve, 3_000))]);
        if (agent.child.exitCode !== null || agent.child.signalCode !== null) crashes++;
        break;
      }
      options.onBatch?.({ sent, elapsedSeconds: (Date.now() - started) / 1000, rssBytes: rssBytes(pid) });
    }
  } finally {
    sessions.close();
  }
  const seconds = (Date.now() - started) / 1000;
  const rssAfter = rssBytes(pid);
  const samplesAfter = crashes > 0 ? 0 : countSamples(await agent.metrics().catch(() => ""));
  const exit = await agent.stop();
  return {
    seed: options.seed,
    inputs: sent,
    seconds: Math.round(seconds * 10) / 10,
    inputsPerSecond: Math.round(sent / seconds),
    crashes,
    healthChecks: { passed: passedChecks, failed: failedChecks },
    validCallFailures,
    rssBytes: { before: rssBefore, after: rssAfter },
    metricSamples: { before: samplesBefore, after: samplesAfter },
    agentErrors: agent.logs.filter((line) => line.level === "error").map((line) => JSON.stringify(line)),
    exitCode: exit.code,
    byKind: Object.fromEntries(
      Object.entries(byKind).map(([name, kind]) => [name, { ...kind, meanMs: Math.round(kind.meanMs * 10) / 10 }]),
    ),
  };
}

/** Exited, or logged an error (an uncaught exception is logged before the agent exits): stop sending. */
function agentFailing(agent: AgentProcess): boolean {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) return true;
  return agent.logs.some((line) => line.level === "error");
}

function countSamples(exposition: string): number {
  return exposition.split("\n").filter((line) => line !== "" && !line.startsWith("#")).length;
}

function pickKind(rng: Rng, kinds: readonly InputKind[], totalWeight: number): InputKind {
  let roll = rng.next() * totalWeight;
  for (const kind of kinds) {
    roll -= kind.weight;
    if (roll < 0) return kind;
  }
  return kinds[kinds.length - 1] as InputKind;
}

/** Undefined when the agent is alive and answers a Ping, GET / and GET /metrics; else what failed. */
async function healthCheck(agent: AgentProcess): Promise<string | undefined> {
  if (agent.child.exitCode !== null || agent.child.signalCode !== null) {
    return `agent exited (${agent.child.exitCode ?? agent.child.signalCode}): ${agent.stderr.slice(-5).join(" | ")}`;
  }
  const problems: string[] = [];
  if (!(await grpcPing(agent.ingestionPort))) problems.push("gRPC Ping failed");
  for (const [port, path] of [
    [agent.ingestionPort, "/"],
    [agent.metricsPort, "/metrics"],
  ] as const) {
    const answer = await httpGet(port, path).catch((error: Error) => ({ status: 0, body: error.message }));
    if (answer.status !== 200) problems.push(`GET ${path}: ${answer.status} ${answer.body.slice(0, 100)}`);
  }
  return problems.length > 0 ? problems.join("; ") : undefined;
}

/** A few long-lived HTTP/2 client sessions, as a proxy keeps; one closed by the agent is replaced on next use. */
class SessionPool {
  private readonly sessions: Array<ClientHttp2Session | undefined>;

  constructor(
    private readonly port: number,
    size: number,
  ) {
    this.sessions = Array.from({ length: size }, () => undefined);
  }

  get(index: number): ClientHttp2Session {
    const current = this.sessions[index];
    if (current && !current.closed && !current.destroyed) return current;
    const session = connectH2(`http://127.0.0.1:${this.port}`);
    session.on("error", () => {});
    this.sessions[index] = session;
    return session;
  }

  close(): void {
    for (const session of this.sessions) session?.destroy();
  }
}

/** The report as a plain-text table: one row per input kind, its outcomes by frequency. */
export function fuzzTable(report: FuzzReport): string {
  const mib = (bytes: number | undefined) => (bytes === undefined ? "?" : `${(bytes / 2 ** 20).toFixed(1)} MiB`);
  const lines = [
    `seed ${report.seed}: ${report.inputs} inputs in ${report.seconds} s (${report.inputsPerSecond}/s)`,
    `crashes ${report.crashes}, health checks ${report.healthChecks.passed} passed / ${report.healthChecks.failed.length} failed, valid-call failures ${report.validCallFailures}, agent error logs ${report.agentErrors.length}, exit code ${report.exitCode}`,
    `agent RSS ${mib(report.rssBytes.before)} before, ${mib(report.rssBytes.after)} after; metric samples ${report.metricSamples.before} before, ${report.metricSamples.after} after`,
    "",
    "| input kind | inputs | mean ms | outcomes (count) |",
    "| --- | ---: | ---: | --- |",
  ];
  for (const [kind, { inputs, meanMs, outcomes }] of Object.entries(report.byKind).sort(([a], [b]) =>
    a.localeCompare(b),
  )) {
    const listed = Object.entries(outcomes)
      .sort(([, a], [, b]) => b - a)
      .map(([outcome, n]) => `${outcome} (${n})`)
      .join(", ");
    lines.push(`| ${kind} | ${inputs} | ${meanMs.toFixed(1)} | ${listed} |`);
  }
  return lines.join("\n");
}
