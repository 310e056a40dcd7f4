import { execFile, execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { type ClientHttp2Session, connect as connectH2 } from "node:http2";
import { tmpdir } from "node:os";
import { join } from "node:path";

// Steady MatchData load for the soak script: h2load (nghttp2-client) when installed, else a node:http2 client.
// Both send the same framed request on a few long-lived h2c connections, as Envoy does.

export interface LoadResult {
  readonly generator: "h2load" | "node";
  readonly seconds: number;
  /** Calls that completed with HTTP 200 (h2load cannot see grpc-status; the soak checks it on the agent's metrics). */
  readonly succeeded: number;
  /** Calls that failed, errored, timed out or got a non-200 status. */
  readonly failed: number;
  readonly requestsPerSecond: number;
}

export interface LoadPlan {
  readonly port: number;
  /** The framed gRPC request body. */
  readonly body: Buffer;
  readonly seconds: number;
  /** Requests per second in total; undefined: as fast as it goes. */
  readonly rate: number | undefined;
  readonly connections: number;
}

const PATH = "/leaksignal.Leaksignal/MatchData";

export function hasH2load(): boolean {
  try {
    execFileSync("h2load", ["--version"], { stdio: "ignore" });
    return true;
  } catch {
    return false;
  }
}

export function runLoad(plan: LoadPlan, generator: "h2load" | "node"): Promise<LoadResult> {
  return generator === "h2load" ? h2load(plan) : nodeLoad(plan);
}

async function h2load(plan: LoadPlan): Promise<LoadResult> {
  const dir = mkdtempSync(join(tmpdir(), "leakagent-soak-"));
  const bodyFile = join(dir, "match-data.bin");
  writeFileSync(bodyFile, plan.body);
  const seconds = Math.max(1, Math.round(plan.seconds));
  const args = [
    "-c",
    String(plan.connections),
    "-m",
    plan.rate === undefined ? "32" : "8",
    "-D",
    String(seconds),
    "-d",
    bodyFile,
    "-H",
    "content-type: application/grpc",
    "-H",
    "te: trailers",
  ];
  // --rps is per client (connection).
  if (plan.rate !== undefined) args.push("--rps", String(Math.max(1, Math.round(plan.rate / plan.connections))));
  args.push(`http://127.0.0.1:${plan.port}${PATH}`);
  const output = await new Promise<string>((resolve, reject) =>
    execFile("h2load", args, { maxBuffer: 16 * 2 ** 20 }, (error, stdout, stderr) =>
      error ? reject(new Error(`h2load failed: ${error.message}\n${stderr}`)) : resolve(stdout),
    ),
  );
  const requests =
    /requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, (\d+) failed, (\d+) errored, (\d+) timeout/.exec(
      output,
    );
  const statuses = /status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx/.exec(output);
  const finished = /finished in ([\d.]+)s, ([\d.]+) req\/s/.exec(output);
  if (!requests || !statuses || !finished) throw new Error(`unexpected h2load output:\n${output}`);
  const [, , , , succeeded, failed, errored, timeout] = requests.map(Number);
  const [, , s3xx, s4xx, s5xx] = statuses.map(Number);
  return {
    generator: "h2load",
    seconds: Number(finished[1]),
    succeeded: (succeeded ?? 0) - (s3xx ?? 0) - (s4xx ?? 0) - (s5xx ?? 0),
    failed: (failed ?? 0) + (errored ?? 0) + (timeout ?? 0) + (s3xx ?? 0) + (s4xx ?? 0) + (s5xx ?? 0),
    requestsPerSecond: Number(finished[2]),
  };
}

/** The fallback: paced by a token bucket, or unpaced with a fixed number of calls in flight per connection. */
async function nodeLoad(plan: LoadPlan): Promise<LoadResult> {
  const sessions: ClientHttp2Session[] = Array.from({ length: plan.connections }, () => {
    const session = connectH2(`http://127.0.0.1:${plan.port}`);
    session.on("error", () => {});
    return session;
  });
  let succeeded = 0;
  let failed = 0;
  let inFlight = 0;
  let next = 0;
  const started = performance.now();
  const end = started + plan.seconds * 1000;
  const maxInFlight = plan.connections * 64;

  const send = () =>
    new Promise<void>((resolve) => {
      inFlight++;
      const session = sessions[next++ % sessions.length] as ClientHttp2Session;
      let ok = false;
      const done = () => {
        inFlight--;
        if (ok) succeeded++;
        else failed++;
        resolve();
      };
      try {
        const stream = session.request({
          ":method": "POST",
          ":path": PATH,
          "content-type": "application/grpc",
          te: "trailers",
        });
        stream.on("trailers", (trailers) => {
          ok = trailers["grpc-status"] === "0";
        });
        stream.on("data", () => {});
        stream.on("error", () => {});
        stream.on("close", done);
        stream.end(plan.body);
      } catch {
        done();
      }
    });

  if (plan.rate === undefined) {
    const worker = async () => {
      while (performance.now() < end) await send();
    };
    await Promise.all(Array.from({ length: maxInFlight }, worker));
  } else {
    const rate = plan.rate;
    await new Promise<void>((resolve) => {
      let sent = 0;
      const tick = setInterval(() => {
        const now = performance.now();
        if (now >= end) {
          clearInterval(tick);
          resolve();
          return;
        }
        const due = Math.floor(((now - started) / 1000) * rate);
        // Calls that cannot go out because too many are in flight are counted as failures: the agent fell behind.
        while (sent < due) {
          sent++;
          if (inFlight < maxInFlight) void send();
          else failed++;
        }
      }, 5);
    });
    while (inFlight > 0) await new Promise((resolve) => setTimeout(resolve, 10));
  }
  for (const session of sessions) session.close();
  const seconds = (performance.now() - started) / 1000;
  return { generator: "node", seconds, succeeded, failed, requestsPerSecond: Math.round(succeeded / seconds) };
}
