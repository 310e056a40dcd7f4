import { type ChildProcess, spawn } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { createInterface } from "node:readline";

const MAIN = resolve(__dirname, "../../dist/app/main.js");

export type LogLine = Record<string, unknown> & { level: string; message: string };

export interface AgentExit {
  code: number | null;
  signal: NodeJS.Signals | null;
}

/** The built agent running as a child process, bound to ephemeral loopback ports. */
export class AgentProcess {
  readonly logs: LogLine[] = [];
  readonly stderr: string[] = [];
  ingestionPort = 0;
  metricsPort = 0;
  readonly exited: Promise<AgentExit>;
  private readonly waiters = new Set<() => void>();

  private constructor(readonly child: ChildProcess) {
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
  static start(options: { config?: string; env?: Record<string, string> } = {}): AgentProcess {
    const env: Record<string, string> = {
      PATH: process.env.PATH ?? "",
      LS_INGESTION_BIND: "127.0.0.1:0",
      LS_PROMETHEUS_BIND: "127.0.0.1:0",
      ...options.env,
    };
    if (options.config !== undefined) {
      const dir = mkdtempSync(join(tmpdir(), "leakagent-e2e-"));
      env.LS_CONFIG_PATH = join(dir, "config.yaml");
      writeFileSync(env.LS_CONFIG_PATH, options.config);
    }
    return new AgentProcess(spawn(process.execPath, [MAIN], { env, stdio: ["ignore", "pipe", "pipe"] }));
  }

  /** Starts the agent and waits until both ports are serving. */
  static async serving(options: { config?: string; env?: Record<string, string> } = {}): Promise<AgentProcess> {
    const agent = AgentProcess.start(options);
    const line = await agent.waitForLog((l) => l.message === "serving");
    agent.ingestionPort = portOf(line.ingestion);
    agent.metricsPort = portOf(line.prometheus);
    return agent;
  }

  waitForLog(predicate: (line: LogLine) => boolean, timeoutMs = 10_000): Promise<LogLine> {
    return new Promise((resolvePromise, reject) => {
      const check = () => {
        const found = this.logs.find(predicate);
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
