import { describe, expect, it } from "vitest";
import { hasH2load } from "../../scripts/reliability/load";
import { runSoak, soakSummary } from "../../scripts/reliability/soak-run";

// The short version of `npm run soak`: 20 s of steady MatchData at a modest fixed rate, scrapes every 5 s,
// policy streams held open. The RSS bound needs minutes and is checked by the full run (docs/reliability.md).
const SECONDS = 20;
const RATE = 400;

describe("the agent under steady load", () => {
  it("answers every call, counts every report, serves every scrape and keeps its policy streams", {
    timeout: 90_000,
  }, async () => {
    if (!hasH2load()) console.warn("h2load not installed (Debian nghttp2-client): the soak uses the node:http2 client");
    const report = await runSoak({
      seconds: SECONDS,
      rate: RATE,
      connections: 2,
      policyStreams: 4,
      scrapeSeconds: 5,
      warmupSeconds: 5,
      segmentSeconds: SECONDS,
    });
    console.log(soakSummary(report));
    expect(report.errorDetails).toEqual({
      failedCalls: 0,
      uncounted: 0,
      rejected: 0,
      failedScrapes: 0,
      policyStreamsLost: 0,
    });
    expect(report.errors).toBe(0);
    // The rate was actually held.
    expect(report.sent).toBeGreaterThanOrEqual(SECONDS * RATE * 0.9);
    expect(report.scrapes.count).toBeGreaterThanOrEqual(3);
  });
});
