import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";
import type { CoreLayout } from "./cores";

const ROOT = resolve(__dirname, "../..");
/** The agent under test; BENCH_AGENT_MAIN points at another build (e.g. a copy of an older dist/) to compare. */
export const AGENT_MAIN = process.env.BENCH_AGENT_MAIN || join(ROOT, "dist/app/main.js");

/** A server under test, running as its own process on the server core. */
export interface Target {
  readonly name: string;
  readonly pid: number;
  /** gRPC over h2c. */
  readonly port: number;
  /** The agent's /metrics port; undefined for the other targets. */
  readonly metricsPort: number | undefined;
  /** The agent's config file (rewrite it to change policies); undefined for the other targets. */
  readonly configPath: string | undefined;
  /**
   * The longest event-loop stall in ms since the previous call (the first call only starts the window).
   * Only for an agent started with `monitorEventLoop`.
   */
  eventLoopStall(): Promise<number>;
  stop(): Promise<void>;
}

/** A config with the one deployment benchmark reports name (`api_key: prod`). */
export const BENCH_CONFIG = `
policies:
  prod:
    categories:
      email:
        - regex: "[a-zA-Z0-9_.+-]{2,}@[a-zA-Z0-9-]{3,}\\\\.[a-zA-Z0-9-.]{2,}"
      phone_number:
        - internal: int_phone
    endpoints:
      - matches: "**"
        config:
          email: {}
          phone_number: {}
`;

export interface AgentOptions {
  readonly config?: string;
  readonly env?: Record<string, string>;
  /** Extra node flags, e.g. --cpu-prof. */
  readonly nodeArgs?: readonly string[];
  /** Preload the event-loop monitor (see event-loop-monitor.cjs). */
  readonly monitorEventLoop?: boolean;
  /** Another build's main.js instead of AGENT_MAIN. */
  readonly main?: string;
}

/** (a) The built agent (dist/app/main.js) with a config file in a temp dir. */
export async function startAgent(layout: CoreLayout, options: AgentOptions = {}): Promise<Target> {
  const dir = mkdtempSync(join(tmpdir(), "leakagent-bench-"));
  const configPath = join(dir, "config.yaml");
  writeFileSync(configPath, options.config ?? BENCH_CONFIG);
  const env = {
    PATH: process.env.PATH ?? "",
    LS_CONFIG_PATH: configPath,
    // A build copied outside the repository still finds the repository's node_modules.
    NODE_PATH: join(ROOT, "node_modules"),
    LS_INGESTION_BIND: "127.0.0.1:0",
    LS_PROMETHEUS_BIND: "127.0.0.1:0",
    ...options.env,
  };
  const monitor = options.monitorEventLoop ? ["--require", join(__dirname, "event-loop-monitor.cjs")] : [];
  const main = options.main ?? AGENT_MAIN;
  const [command, args] = layout.server(process.execPath, [...(options.nodeArgs ?? []), ...monitor, main]);
  const stdio = options.monitorEventLoop ? ["ignore", "pipe", "pipe", "ipc"] : ["ignore", "pipe", "pipe"];
  const child = spawn(command, args, { env, stdio: stdio as ["ignore", "pipe", "pipe"], cwd: dir });
  child.once("exit", () => rmSync(dir, { recursive: true, force: true }));
  const line = await firstLine(child, (l) => l.message === "serving");
  return target("agent", child, {
    port: portOf(line.ingestion),
    metricsPort: portOf(line.prometheus),
    configPath,
  });
}

/** (b) A no-op node:http2 responder: the runtime's limit. */
export function startNoopResponder(layout: CoreLayout, nodeArgs: readonly string[] = []): Promise<Target> {
  return startScript(layout, "no-op http2", "noop-responder.ts", nodeArgs);
}

/**
 * (b') The no-op responder with the agent's code loaded and idle: every module the agent requires (its
 * libraries and its own), none of them run (main.js starts the agent only as the main module). What the
 * agent's heap alone, without its work, costs the runtime; see the latency benchmark.
 */
export function startLoadedNoopResponder(layout: CoreLayout): Promise<Target> {
  return startScript(layout, "no-op http2 + agent modules", "noop-responder.ts", ["--require", AGENT_MAIN]);
}

/** (c) A plain @grpc/grpc-js server that decodes and discards. */
export function startGrpcJsServer(layout: CoreLayout, nodeArgs: readonly string[] = []): Promise<Target> {
  return startScript(layout, "grpc-js", "grpc-js-server.ts", nodeArgs);
}

async function startScript(
  layout: CoreLayout,
  name: string,
  script: string,
  nodeArgs: readonly string[],
): Promise<Target> {
  const [command, args] = layout.server(process.execPath, [
    ...nodeArgs,
    "--import",
    "tsx",
    join(__dirname, "../targets", script),
  ]);
  const child = spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], cwd: ROOT });
  const line = await firstLine(child, (l) => typeof l.listening === "number");
  return target(name, child, { port: Number(line.listening), metricsPort: undefined, configPath: undefined });
}

function target(
  name: string,
  child: ChildProcess,
  where: { port: number; metricsPort: number | undefined; configPath: string | undefined },
): Target {
  const exited = new Promise<void>((done) => child.once("exit", () => done()));
  return {
    name,
    pid: child.pid ?? 0,
    ...where,
    eventLoopStall() {
      if (!child.connected) return Promise.reject(new Error(`${name} runs without the event-loop monitor`));
      return new Promise((done) => {
        child.once("message", (message: { eventLoopStallMs: number }) =>
          // Node does not record the first interval after a reset: let it pass before anything is measured.
          setTimeout(() => done(message.eventLoopStallMs), 3 * EVENT_LOOP_RESOLUTION_MS),
        );
        child.send("event-loop-stall");
      });
    },
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
      const timer = setTimeout(() => child.kill("SIGKILL"), 10_000);
      await exited;
      clearTimeout(timer);
    },
  };
}

/** As in event-loop-monitor.cjs. */
const EVENT_LOOP_RESOLUTION_MS = 10;

type Line = Record<string, unknown>;

/**
 * Resolves with the first JSON line on stdout that matches; rejects if the process exits first. The default
 * wait is long: tsx compiles a target at its start, which takes many seconds on a machine busy with other work.
 */
function firstLine(child: ChildProcess, predicate: (line: Line) => boolean, timeoutMs = 60_000): Promise<Line> {
  const output: string[] = [];
  return new Promise((done, fail) => {
    const timer = setTimeout(
      () => fail(new Error(`no start line within ${timeoutMs} ms:\n${output.join("\n")}`)),
      timeoutMs,
    );
    const onExit = (code: number | null) => {
      clearTimeout(timer);
      fail(new Error(`exited (${code}) before it was serving:\n${output.join("\n")}`));
    };
    child.once("exit", onExit);
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => output.push(line));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (text) => {
      output.push(text);
      let line: Line;
      try {
        line = JSON.parse(text) as Line;
      } catch {
        return;
      }
      if (!predicate(line)) return;
      clearTimeout(timer);
      child.off("exit", onExit);
      done(line);
    });
  });
}

function portOf(address: unknown): number {
  const port = Number(String(address).split(":").pop());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in ${String(address)}`);
  return port;
}
