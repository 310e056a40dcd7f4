import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const MAIN = resolve(__dirname, "../../dist/app/main.js");

export type LogLine = Record<string, unknown> & { level: string; message: string };

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

export interface AgentOptions {
  /** YAML text written to `config.yaml` in a fresh temp dir, passed as LS_CONFIG_PATH. */
  config?: string;
  /** An existing LS_CONFIG_PATH (e.g. a ConfigMap-like symlink layout the test built); wins over `config`. */
  configPath?: string;
  env?: Record<string, string>;
}

/** The built agent running as a child process, bound to ephemeral loopback ports. */
export class AgentProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  ingestionPort = 0;
  metricsPort = 0;
  readonly exited: Promise<AgentExit>;
  private readonly waiters = new Set<() => void>();

  private constructor(
    readonly child: ChildProcess,
    /** LS_CONFIG_PATH of the agent, if it has one. */
    readonly configPath: string | undefined,
  ) {
    this.exited = new Promise((done) => child.on("exit", (code, signal) => done({ code, signal })));
    createInterface({ input: child.stdout as NodeJS.ReadableStream }).on("line", (line) => {
      try {
        this.logs.push(JSON.parse(line) as LogLine);
      } catch {
        this.logs.push({ level: "raw", message: line });
      }
      for (const wake of this.waiters) wake();
    });
    createInterface({ input: child.stderr as NodeJS.ReadableStream }).on("line", (line) => {
      this.stderr.push(line);
      for (const wake of this.waiters) wake();
    });
  }

  /** Starts the agent; `config` (YAML text) is written to a temp file and passed as LS_CONFIG_PATH. */
  static start(options: AgentOptions = {}): AgentProcess {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      LS_INGESTION_BIND: "127.0.0.1:0",
      LS_PROMETHEUS_BIND: "127.0.0.1:0",
      // Nothing balances load over a test's agent: stop at once (tests/e2e/shutdown.test.ts covers the delay).
      LS_SHUTDOWN_DELAY_MS: "0",
      ...options.env,
    };
    let tempDir: string | undefined;
    if (options.configPath !== undefined) {
      env.LS_CONFIG_PATH = options.configPath;
    } else if (options.config !== undefined) {
      tempDir = mkdtempSync(join(tmpdir(), "leakagent-e2e-"));
      env.LS_CONFIG_PATH = join(tempDir, "config.yaml");
      writeFileSync(env.LS_CONFIG_PATH, options.config);
    }
    const child = spawn(process.execPath, [MAIN], { env, stdio: ["ignore", "pipe", "pipe"] });
    if (tempDir) child.once("exit", () => rmSync(tempDir, { recursive: true, force: true }));
    return new AgentProcess(child, env.LS_CONFIG_PATH);
  }

  /** Starts the agent and waits until both ports are serving. */
  static async serving(options: AgentOptions = {}): Promise<AgentProcess> {
    const agent = AgentProcess.start(options);
    const line = await agent.waitForLog((l) => l.message === "serving");
    agent.ingestionPort = portOf(line.ingestion);
    agent.metricsPort = portOf(line.prometheus);
    return agent;
  }

  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    return this.logAfter(0, predicate, timeoutMs);
  }

  /** Waits for a matching line logged after this call (e.g. the outcome of a change the test is about to make). */
  nextLog(predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    return this.logAfter(this.logs.length, predicate, timeoutMs);
  }

  /** Sends SIGHUP: the agent re-reads its config file now. */
  reload(): void {
    this.child.kill("SIGHUP");
  }

  private logAfter(from: number, predicate: (line: LogLine) => boolean, timeoutMs: number): Promise<LogLine> {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const found = this.logs.slice(from).find(predicate);
        if (found) {
          finish();
          resolvePromise(found);
        } else if (this.child.exitCode !== null) {
          finish();
          reject(new Error(`agent exited (${this.child.exitCode}) before the expected log line:\n${this.output()}`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(new Error(`timed out waiting for a log line:\n${this.output()}`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
        this.child.off("exit", check);
      };
      this.waiters.add(check);
      this.child.on("exit", check);
      check();
    });
  }

  async stop(signal: NodeJS.Signals = "SIGTERM"): Promise<AgentExit> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill(signal);
    return this.exited;
  }

  async metrics(accept?: string): Promise<string> {
    const response = await fetch(`http://127.0.0.1:${this.metricsPort}/metrics`, {
      headers: accept ? { accept } : {},
    });
    return response.text();
  }

  output(): string {
    return [...this.logs.map((l) => JSON.stringify(l)), ...this.stderr].join("\n");
  }
}

function portOf(address: unknown): number {
  const port = Number(String(address).split(":").pop());
  if (!Number.isInteger(port) || port <= 0) throw new Error(`no port in ${String(address)}`);
  return port;
}
