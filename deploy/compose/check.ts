// `npm run compose:check [-- --keep]`: builds and starts the compose stack, sends requests through Envoy
// (whose LeakSignal filter reports to the agent), and waits until LeakSignal's match metrics show up in
// Prometheus. Stops the stack afterwards unless --keep. tests/e2e/compose.test.ts runs the same check.

import { type SpawnSyncReturns, spawnSync } from "node:child_process";
import { resolve } from "node:path";

export const COMPOSE_DIR = __dirname;
export const PROJECT = "leakagent-demo";
const ENVOY = "http://127.0.0.1:8000";
const PROMETHEUS = "http://127.0.0.1:9090";
/** The deployment the Envoy filter connects as (envoy/envoy.yaml.in, leakagent/config.yaml). */
const DEPLOYMENT = "compose";
/** Categories of leakagent/config.yaml that upstream/server.js's data contains. */
export const EXPECTED_CATEGORIES = ["credit_card", "email", "phone_number", "ssn"];
/** The first start pulls the module through the agent and loads it in Envoy: give it time. */
const METRICS_DEADLINE_MS = 180_000;

export interface ComposeCheckResult {
  /** leaksignal_match_count_sum by category, for the compose deployment. */
  matches: Record<string, number>;
  connectedProxies: number;
  requestsSent: number;
}

function firstLine(text: string): string {
  return text.trim().split("\n")[0] ?? "";
}

function docker(args: readonly string[], inherit = false): SpawnSyncReturns<string> {
  return spawnSync("docker", args, {
    encoding: "utf8",
    stdio: inherit ? ["ignore", "inherit", "inherit"] : "pipe",
    maxBuffer: 64 * 1024 * 1024,
  });
}

function compose(args: readonly string[], inherit = false): SpawnSyncReturns<string> {
  return docker(["compose", "-p", PROJECT, "-f", resolve(COMPOSE_DIR, "compose.yaml"), ...args], inherit);
}

/** Why `docker compose` cannot run the stack here, or undefined when it can (images aside). */
export function composeUnavailable(): string | undefined {
  const version = docker(["compose", "version"]);
  if (version.error) return `the docker client is not installed (${version.error.message})`;
  if (version.status !== 0) {
    return `the docker compose plugin is missing: \`docker compose version\` says "${firstLine(version.stderr)}"`;
  }
  const engine = docker(["info", "--format", "{{.ServerVersion}}"]);
  if (engine.status !== 0) {
    return `no Docker engine is reachable: \`docker info\` says "${firstLine(engine.stderr || engine.stdout)}"`;
  }
  return undefined;
}

/** Pulls the stack's images; returns why that failed, or undefined. */
export function pullImages(): string | undefined {
  const pull = compose(["pull", "--quiet", "--ignore-buildable"]);
  if (pull.status === 0) return undefined;
  const lines = (pull.stderr || pull.stdout).trim().split("\n");
  return `\`docker compose pull\` failed: "${lines.at(-1) ?? ""}"`;
}

async function promQuery(expr: string): Promise<Array<{ metric: Record<string, string>; value: [number, string] }>> {
  const response = await fetch(`${PROMETHEUS}/api/v1/query?${new URLSearchParams({ query: expr })}`);
  const body = (await response.json()) as { status: string; data: { result: [] } };
  return body.status === "success" ? body.data.result : [];
}

const sleep = (ms: number) => new Promise((done) => setTimeout(done, ms));

/** Starts the stack and waits for match metrics in Prometheus; throws with the agent's and Envoy's logs if none come. */
export async function composeCheck(options: { keep?: boolean; inherit?: boolean } = {}): Promise<ComposeCheckResult> {
  const log = (line: string) => process.stdout.write(`compose:check: ${line}\n`);
  try {
    log("building and starting the stack");
    const up = compose(["up", "--detach", "--build", "--wait", "--wait-timeout", "300"], options.inherit);
    if (up.status !== 0) throw new Error(`docker compose up failed:\n${up.stderr ?? ""}`);

    let requestsSent = 0;
    let result: ComposeCheckResult | undefined;
    const deadline = Date.now() + METRICS_DEADLINE_MS;
    while (Date.now() < deadline) {
      for (const path of ["/api/users", "/api/orders"]) {
        const answer = await fetch(`${ENVOY}${path}`).catch(() => undefined);
        await answer?.arrayBuffer();
        if (answer) requestsSent++;
      }
      const matches = Object.fromEntries(
        (await promQuery(`sum by (category) (leaksignal_match_count_sum{deployment="${DEPLOYMENT}"})`).catch(() => []))
          .map((r) => [r.metric.category, Number(r.value[1])] as const)
          .filter(([category]) => category !== undefined),
      ) as Record<string, number>;
      if (EXPECTED_CATEGORIES.every((category) => (matches[category] ?? 0) > 0)) {
        const connected = await promQuery(`sum(leakagent_policy_update_waiting{deployment="${DEPLOYMENT}"})`);
        result = { matches, connectedProxies: Number(connected[0]?.value[1] ?? 0), requestsSent };
        break;
      }
      await sleep(2000);
    }
    if (!result) {
      const logs = compose(["logs", "--no-color", "--tail", "40", "leakagent", "envoy"]);
      throw new Error(
        `no LeakSignal matches of every category (${EXPECTED_CATEGORIES.join(", ")}) reached Prometheus within ${METRICS_DEADLINE_MS / 1000} s after ${requestsSent} requests through Envoy\n${logs.stdout}`,
      );
    }
    log(`${result.requestsSent} requests through Envoy; matches in Prometheus: ${JSON.stringify(result.matches)}`);
    log(`proxies connected to the agent: ${result.connectedProxies}`);
    return result;
  } finally {
    if (options.keep) log("leaving the stack running (Envoy :8000, Prometheus :9090, Grafana :3000)");
    else compose(["down", "--volumes", "--remove-orphans"]);
  }
}

if (require.main === module) {
  const unavailable = composeUnavailable();
  if (unavailable) {
    process.stderr.write(`compose:check: cannot run: ${unavailable}\n`);
    process.exitCode = 2;
  } else {
    composeCheck({ keep: process.argv.includes("--keep"), inherit: true }).then(
      () => process.stdout.write("compose:check: ok\n"),
      (error: unknown) => {
        process.stderr.write(`compose:check: FAILED: ${error instanceof Error ? error.message : String(error)}\n`);
        process.exitCode = 1;
      },
    );
  }
}
