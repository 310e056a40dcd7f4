import { describe, expect, it } from "vitest";
import { fuzzTable, runFuzz } from "../../scripts/reliability/fuzz-run";

// The short version of `npm run fuzz`: a few thousand malformed inputs of every kind against the built agent.
// A fixed seed keeps it reproducible; LS_FUZZ_SEED explores others.
const SEED = Number(process.env.LS_FUZZ_SEED ?? 20_250_601);

describe("the agent under malformed input", () => {
  it("never crashes and keeps answering Ping, GET / and /metrics after every batch", { timeout: 90_000 }, async () => {
    const report = await runFuzz({ seed: SEED, count: 3_000, seconds: 25, concurrency: 48, batchSize: 1_000 });
    console.log(fuzzTable(report));
    expect(report.inputs).toBeGreaterThanOrEqual(1_000);
    expect(report.crashes).toBe(0);
    expect(report.healthChecks.failed).toEqual([]);
    expect(report.healthChecks.passed).toBeGreaterThanOrEqual(1);
    expect(report.validCallFailures).toBe(0);
    expect(report.agentErrors).toEqual([]);
    expect(report.exitCode).toBe(0);
    // Every kind of input was actually sent.
    expect(Object.keys(report.byKind).length).toBeGreaterThanOrEqual(12);
  });
});
