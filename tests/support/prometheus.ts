import { type ChildProcess, spawn, spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

/** Why a test that needs `binary` cannot run here, or undefined when it can. */
export function missingTool(binary: string, debianPackage: string): string | undefined {
  const found = spawnSync(binary, ["--version"], { encoding: "utf8" });
  if (found.error || found.status !== 0) {
    return `${binary} is not installed (Debian package ${debianPackage}; scripts/install-test-deps.sh installs it)`;
  }
  return undefined;
}

export const PROMETHEUS_MISSING = missingTool("prometheus", "prometheus");

export interface InstantSample {
  metric: Record<string, string>;
  value: number;
}

/** A free loopback port: Prometheus cannot listen on port 0 and tell which port it got. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

/**
 * A real Prometheus server (the Debian package), on a free loopback port with its storage in a temp dir,
 * scraping `targets` every `scrapeIntervalSeconds` as job `leakagent`.
 */
export class PrometheusServer {
  private constructor(
    private readonly child: ChildProcess,
    readonly port: number,
    private readonly dir: string,
  ) {}

  static async start(targets: readonly string[], scrapeIntervalSeconds = 1): Promise<PrometheusServer> {
    const dir = mkdtempSync(join(tmpdir(), "leakagent-prometheus-"));
    const config = join(dir, "prometheus.yml");
    writeFileSync(
      config,
      [
        "global:",
        `  scrape_interval: ${scrapeIntervalSeconds}s`,
        `  scrape_timeout: ${scrapeIntervalSeconds}s`,
        "  evaluation_interval: 1m",
        "scrape_configs:",
        "  - job_name: leakagent",
        "    static_configs:",
        `      - targets: [${targets.map((t) => JSON.stringify(t)).join(", ")}]`,
        "",
      ].join("\n"),
    );
    const port = await freePort();
    const output: string[] = [];
    const child = spawn(
      "prometheus",
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(dir, "data")}`,
        `--web.listen-address=127.0.0.1:${port}`,
        "--log.level=warn",
      ],
      { stdio: ["ignore", "pipe", "pipe"] },
    );
    child.stdout?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    child.stderr?.on("data", (chunk: Buffer) => output.push(chunk.toString()));
    const server = new PrometheusServer(child, port, dir);
    const deadline = Date.now() + 20_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`prometheus exited (${child.exitCode}):\n${output.join("")}`);
      const ready = await fetch(`${server.url}/-/ready`).then(
        (response) => response.ok,
        () => false,
      );
      if (ready) return server;
      if (Date.now() > deadline) {
        await server.stop();
        throw new Error(`prometheus did not become ready:\n${output.join("")}`);
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }

  get url(): string {
    return `http://127.0.0.1:${this.port}`;
  }

  /** GET an API path; throws with Prometheus' own error text when it answers an error. */
  async api<T>(path: string, params: Record<string, string | string[]> = {}): Promise<T> {
    const search = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      for (const v of Array.isArray(value) ? value : [value]) search.append(name, v);
    }
    const response = await fetch(`${this.url}${path}?${search}`);
    const body = (await response.json()) as { status: string; data: T; error?: string; errorType?: string };
    if (body.status !== "success")
      throw new Error(`${path} ${JSON.stringify(params)}: ${body.errorType}: ${body.error}`);
    return body.data;
  }

  /** An instant query; `time` in seconds (defaults to now). Throws on a PromQL error. */
  async query(expr: string, time?: number): Promise<InstantSample[]> {
    const params: Record<string, string> = { query: expr };
    if (time !== undefined) params.time = time.toFixed(3);
    const data = await this.api<{ resultType: string; result: unknown }>("/api/v1/query", params);
    if (data.resultType === "scalar") {
      const [, value] = data.result as [number, string];
      return [{ metric: {}, value: Number(value) }];
    }
    if (data.resultType !== "vector") throw new Error(`${expr}: expected a vector, got ${data.resultType}`);
    return (data.result as Array<{ metric: Record<string, string>; value: [number, string] }>).map((r) => ({
      metric: r.metric,
      value: Number(r.value[1]),
    }));
  }

  /** The raw samples of one series selector over the last `seconds`, oldest first: [time in s, value]. */
  async samples(selector: string, seconds: number): Promise<Array<[number, number]>> {
    const data = await this.api<{ result: Array<{ values: Array<[number, string]> }> }>("/api/v1/query", {
      query: `${selector}[${seconds}s]`,
    });
    const [series] = data.result;
    return (series?.values ?? []).map(([t, v]) => [t, Number(v)]);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) {
      const exited = new Promise((resolve) => this.child.once("exit", resolve));
      this.child.kill("SIGTERM");
      await exited;
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}
