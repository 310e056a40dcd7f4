import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { fanoutBenchmark } from "../../bench/fanout";
import { ingestBenchmark } from "../../bench/ingest";
import { latencyBenchmark } from "../../bench/latency";
import { memoryBenchmark } from "../../bench/memory";
import { scrapeBenchmark } from "../../bench/scrape";
import { writeSummary } from "../../bench/summary";
import { h2loadAvailable } from "../../bench/support/h2load";

// A few seconds of each benchmark (npm run bench), so the harness keeps working: it must drive the built
// agent and the comparison servers, see gRPC status 0 on their answers, and print and write its results.
// It checks correctness, not speed: CI machines are too noisy for that. The timeouts are generous for the
// same reason: each test starts servers (the comparison ones through tsx) on a machine that may be running
// other suites, and waits for h2load runs of fixed length.

/** Per test: several times what each takes on an idle machine. */
const TIMEOUT_MS = 240_000;

const H2LOAD_MISSING = !h2loadAvailable();
if (H2LOAD_MISSING) console.warn("skipping the benchmark smoke run: h2load is missing (Debian package nghttp2-client)");

describe.skipIf(H2LOAD_MISSING)("the benchmarks, briefly", () => {
  let resultsDir: string;
  let printed: string[];

  beforeAll(() => {
    resultsDir = mkdtempSync(join(tmpdir(), "leakagent-bench-smoke-"));
    printed = [];
    vi.spyOn(console, "log").mockImplementation((...args: unknown[]) => {
      printed.push(args.join(" "));
    });
  });

  afterAll(() => {
    vi.restoreAllMocks();
    rmSync(resultsDir, { recursive: true, force: true });
  });

  it(
    "measures ingest of the agent, no-op responder and grpc-js, all answering grpc-status 0",
    async () => {
      const results = await ingestBenchmark({ runs: 1, seconds: 2, warmUpSeconds: 1, probeCalls: 10, resultsDir });

      for (const name of ["agent", "noop", "grpcJs"] as const) {
        const [run] = results.runs[name];
        expect(run?.succeeded, name).toBeGreaterThan(0);
        expect(run?.failed, name).toBe(0);
        expect(run?.probeFailures, name).toEqual([]);
        expect(run?.probedOk, name).toBe(10);
      }
      // The agent did its work: every report h2load got an answer for was counted in its metrics.
      expect(results.runs.agent[0]?.counted).toBeGreaterThanOrEqual(results.runs.agent[0]?.succeeded ?? 1);
      expect(results.correct).toBe(true);

      const written = JSON.parse(readFileSync(join(resultsDir, "ingest.json"), "utf8"));
      expect(written.median.agent).toBe(results.median.agent);
      expect(written.machine.node).toBe(process.versions.node);
      expect(printed.some((line) => line.includes("(b) no-op node:http2"))).toBe(true);
    },
    TIMEOUT_MS,
  );

  it(
    "renders /metrics with live series and measures ingest while scraping",
    async () => {
      const results = await scrapeBenchmark({
        seriesLevels: [2_000],
        scrapes: 2,
        runs: 1,
        seconds: 2,
        scrapeIntervalSeconds: 1,
        resultsDir,
      });

      expect(results.render.map((render) => render.format)).toEqual(["openmetrics", "text"]);
      for (const render of results.render) {
        expect(render.series).toBeGreaterThanOrEqual(2_000);
        expect(render.bytes).toBeGreaterThan(0);
        expect(render.stallMs).toBeGreaterThanOrEqual(0);
      }
      // The populated series were still there, live, while the load ran and the scrapes came.
      expect(results.ingest.series).toBeGreaterThanOrEqual(2_000);
      expect(results.ingest.scrapesUnderLoad).toBeGreaterThan(0);
      expect(results.ingest.stallDuringScrapesMs).toBeGreaterThanOrEqual(0);
      expect(results.ingest.withoutScrapes[0]).toBeGreaterThan(0);
      expect(results.correct).toBe(true);
      expect(existsSync(join(resultsDir, "scrape.json"))).toBe(true);
      expect(printed.some((line) => line.includes("Scrape: /metrics rendering"))).toBe(true);
    },
    TIMEOUT_MS,
  );

  it(
    "measures latency at half the agent's measured maximum, beside the no-op responder with and without the agent's modules",
    async () => {
      const ingest = JSON.parse(readFileSync(join(resultsDir, "ingest.json"), "utf8"));
      const results = await latencyBenchmark({ runs: 1, seconds: 2, warmUpSeconds: 1, resultsDir });

      expect(results.maxRate).toBe(ingest.median.agent);
      expect(Math.abs(results.rate - results.maxRate / 2)).toBeLessThanOrEqual(results.options.clients);
      for (const name of ["agent", "noop", "loadedNoop"] as const) {
        const [run] = results.runs[name];
        expect(run?.succeeded, name).toBeGreaterThan(0);
        expect(run?.p50Us, name).toBeGreaterThan(0);
        expect(run?.p99Us, name).toBeGreaterThanOrEqual(run?.p50Us ?? 0);
      }
      expect(results.loadedToNoop).toBeGreaterThan(0);
      expect(results.agentToLoaded).toBeGreaterThan(0);
      expect(results.correct).toBe(true);
      expect(existsSync(join(resultsDir, "latency.json"))).toBe(true);
    },
    TIMEOUT_MS,
  );

  it(
    "measures memory with populated series and policy fan-out to open streams, then summarizes",
    async () => {
      const memory = await memoryBenchmark({ series: 2_000, runs: 1, scrapes: 1, resultsDir });
      expect(memory.median.series).toBeGreaterThanOrEqual(2_000);
      expect(memory.median.populatedMiB).toBeGreaterThan(0);

      const fanout = await fanoutBenchmark({ streams: 20, changes: 2, resultsDir });
      expect(fanout.ms).toHaveLength(2);
      expect(fanout.correct).toBe(true);

      const summary = writeSummary(resultsDir);
      for (const benchmark of ["Ingest", "Latency", "Scrape", "Memory", "Fan-out"]) {
        expect(summary, benchmark).toContain(`| ${benchmark} |`);
      }
      expect(readFileSync(join(resultsDir, "summary.md"), "utf8")).toBe(summary);
    },
    TIMEOUT_MS,
  );
});
