import { existsSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { ingestBenchmark } from "../../bench/ingest";
import { scrapeBenchmark } from "../../bench/scrape";
import { h2loadAvailable } from "../../bench/support/h2load";

// A few seconds of benchmarks 1 and 3 (npm run bench), so the harness keeps working: it must drive the
// built agent and the comparison servers, see gRPC status 0 on their answers, and print and write its
// results. It checks correctness, not speed: CI machines are too noisy for that.

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

  it("measures ingest of the agent, the no-op responder and grpc-js, all answering grpc-status 0", async () => {
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
  }, 90_000);

  it("renders /metrics with live series and measures ingest while scraping", async () => {
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
    expect(results.ingest.scrapesUnderLoad).toBeGreaterThan(0);
    expect(results.ingest.withoutScrapes[0]).toBeGreaterThan(0);
    expect(results.correct).toBe(true);
    expect(existsSync(join(resultsDir, "scrape.json"))).toBe(true);
    expect(printed.some((line) => line.includes("Scrape: /metrics rendering"))).toBe(true);
  }, 90_000);
});
