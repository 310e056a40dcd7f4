import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import type { CoreLayout } from "./cores";
import { quantile } from "./report";

export function h2loadAvailable(): boolean {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export const MATCH_DATA_PATH = "/leaksignal.Leaksignal/MatchData";

export interface LoadOptions {
  readonly port: number;
  /** The request body: one gRPC-framed message. */
  readonly body: Buffer;
  readonly clients: number;
  /** Concurrent streams per connection. */
  readonly streams: number;
  readonly seconds: number;
  readonly warmUpSeconds: number;
  /** Requests per second per client; unlimited when undefined. */
  readonly ratePerClient?: number | undefined;
  /** Record each request's latency. */
  readonly latencies?: boolean;
  /** The server's process, to measure its CPU time per request (Linux). */
  readonly serverPid?: number | undefined;
}

export interface LoadResult {
  readonly requestsPerSecond: number;
  readonly succeeded: number;
  readonly failed: number;
  readonly errored: number;
  readonly status2xx: number;
  /**
   * Server CPU time (user + system) per request over the measured phase, in µs: unlike the rate, hardly
   * moved by other load on a shared machine, so the best figure to compare two builds with.
   */
  readonly serverCpuUsPerRequest?: number;
  /** Microseconds, when latencies were recorded. */
  readonly p50Us?: number;
  readonly p99Us?: number;
  readonly maxUs?: number;
}

/** Runs h2load over h2c (prior knowledge) against one MatchData endpoint on the load core. */
export async function runH2load(layout: CoreLayout, options: LoadOptions): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "leakagent-h2load-"));
  try {
    const bodyPath = join(dir, "body.bin");
    const logPath = join(dir, "requests.log");
    writeFileSync(bodyPath, options.body);
    const args = [
      `http://127.0.0.1:${options.port}${MATCH_DATA_PATH}`,
      "-d",
      bodyPath,
      "-H",
      "content-type: application/grpc",
      "-H",
      "te: trailers",
      "-c",
      String(options.clients),
      "-m",
      String(options.streams),
      "-D",
      String(options.seconds),
      "--warm-up-time",
      String(options.warmUpSeconds),
    ];
    if (options.ratePerClient !== undefined) args.push("--rps", String(options.ratePerClient));
    if (options.latencies) args.push("--log-file", logPath);
    const [command, commandArgs] = layout.load("h2load", args);
    // The server's CPU time over the measured phase (h2load says when warm-up is over and when it stops).
    let cpuAtStart: number | undefined;
    let cpuAtEnd: number | undefined;
    const output = await new Promise<string>((done, fail) => {
      const child = execFile(command, commandArgs, { maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
        error ? fail(new Error(`h2load failed: ${error.message}\n${stdout}${stderr}`)) : done(stdout),
      );
      if (options.serverPid === undefined) return;
      const pid = options.serverPid;
      child.stdout?.on("data", (chunk: Buffer) => {
        const text = chunk.toString();
        if (text.includes("Warm-up phase is over")) cpuAtStart = cpuTicks(pid);
        if (text.includes("Main benchmark duration is over")) cpuAtEnd = cpuTicks(pid);
      });
    });
    let result = parseH2load(output);
    if (cpuAtStart !== undefined && cpuAtEnd !== undefined && result.succeeded > 0) {
      result = { ...result, serverCpuUsPerRequest: ((cpuAtEnd - cpuAtStart) * TICK_US) / result.succeeded };
    }
    return options.latencies ? { ...result, ...latencySummary(readFileSync(logPath, "utf8")) } : result;
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/** utime + stime of a process in clock ticks (/proc/<pid>/stat fields 14 and 15). */
function cpuTicks(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return Number(fields[11]) + Number(fields[12]);
  } catch {
    return undefined;
  }
}

/** Linux reports CPU times in 1/100 s (USER_HZ). */
const TICK_US = 10_000;

/** Reads h2load's summary: the measured rate and what became of the requests. */
export function parseH2load(output: string): LoadResult {
  const rate = /finished in [\d.]+\w*, ([\d.]+) req\/s/.exec(output);
  const requests = /requests: \d+ total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored/.exec(
    output,
  );
  const statuses = /status codes: (\d+) 2xx/.exec(output);
  if (!rate || !requests || !statuses) throw new Error(`unexpected h2load output:\n${output}`);
  return {
    requestsPerSecond: Number(rate[1]),
    succeeded: Number(requests[1]),
    failed: Number(requests[2]),
    errored: Number(requests[3]),
    status2xx: Number(statuses[1]),
  };
}

/** Per-request log columns: start (µs since epoch), HTTP status, µs until the end of the response. */
function latencySummary(log: string): { p50Us: number; p99Us: number; maxUs: number } {
  const latencies: number[] = [];
  for (const row of log.split("\n")) {
    const columns = row.split("\t");
    if (columns.length >= 3 && columns[1] === "200") latencies.push(Number(columns[2]));
  }
  latencies.sort((a, b) => a - b);
  return {
    p50Us: quantile(latencies, 0.5),
    p99Us: quantile(latencies, 0.99),
    maxUs: latencies[latencies.length - 1] ?? Number.NaN,
  };
}
