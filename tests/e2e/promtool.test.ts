import { spawnSync } from "node:child_process";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { MatchDataResponse } from "../../src/generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { missingTool } from "../support/prometheus";
import { currentTransaction, legacyTransaction } from "../support/transactions";

// promtool's naming lints on the agent's exposition. LeakSignal's documented names break two rules on
// purpose (existing dashboards query them): counters without `_total`, and `_ms` time units. Those lints,
// for exactly those names, are the only ones allowed; anything the agent adds must pass clean.

const PROMTOOL_MISSING = missingTool("promtool", "prometheus");
if (PROMTOOL_MISSING) console.warn(`skipping the promtool test: ${PROMTOOL_MISSING}`);

/** LeakSignal's counters, named without `_total` (docs/metrics.md). */
const LEGACY_COUNTERS = [
  "leaksignal_status_code",
  "leakagent_match_inbound",
  "leakagent_proxy_pull",
  "leakagent_policy_update_turnaway",
  "leakagent_policy_update_init",
  "leakagent_policy_update_send",
];
/** LeakSignal's histograms, in milliseconds. */
const LEGACY_MS_HISTOGRAMS = ["leaksignal_match_time_ms", "leaksignal_request_time_ms", "leaksignal_response_time_ms"];

const ALLOWED = [
  ...LEGACY_COUNTERS.map((name) => `${name} counter metrics should have "_total" suffix`),
  ...LEGACY_MS_HISTOGRAMS.map((name) => `${name} metric names should not contain abbreviated units`),
].sort();

describe.skipIf(PROMTOOL_MISSING)("promtool check metrics on the agent's exposition", () => {
  let agent: AgentProcess;

  beforeAll(async () => {
    agent = await AgentProcess.serving({
      config: "policies:\n  shop:\n    endpoints:\n      - matches: '**'\n        config: {}\n",
    });
    // Every labelled family gets a series, so promtool sees all of them.
    const client = leaksignalClient(agent.ingestionPort);
    for (const report of [currentTransaction({ apiKey: "shop" }), legacyTransaction({ deploymentName: "shop" })]) {
      const { error } = await unary<MatchDataResponse>((cb) => client.matchData(report, cb));
      expect(error).toBeUndefined();
    }
    const stream = new PolicyStreamClient(client, { apiKey: "shop" });
    await stream.received(1);
    await new PolicyStreamClient(client, { apiKey: "intruder" }).ended;
    await fetch(`http://127.0.0.1:${agent.ingestionPort}/proxy/v1/leaksignal.wasm`).then((r) => r.text());
    stream.cancel();
    client.close();
  });

  afterAll(async () => {
    await agent?.stop();
  });

  it("reports only the naming lints LeakSignal's documented names necessarily trigger", async () => {
    const exposition = await agent.metrics();
    for (const name of [...LEGACY_COUNTERS, ...LEGACY_MS_HISTOGRAMS, "leakagent_rejected_total"]) {
      expect(exposition, name).toContain(`\n${name}`);
    }
    const lint = spawnSync("promtool", ["check", "metrics"], { input: exposition, encoding: "utf8" });
    const problems = `${lint.stdout}${lint.stderr}`
      .split("\n")
      .map((line) => line.trim())
      .filter((line) => line !== "")
      .sort();
    expect(problems).toEqual(ALLOWED);
  });
});
