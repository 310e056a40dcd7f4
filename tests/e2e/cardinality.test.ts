import { createHmac } from "node:crypto";
import { writeFile } from "node:fs/promises";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { LeaksignalClient } from "../generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { parseExposition } from "../support/exposition";
import { leaksignalClient, unary } from "../support/grpc-client";
import { currentTransaction } from "../support/transactions";

// The config file's `metrics` section on the running agent: reports over real gRPC, scrapes of /metrics.

const CAP = 100;
const TTL_MS = 2_000;
/** sweepIntervalMs(2 s): the sweep runs at most once a second. */
const SWEEP_MS = 1_000;
const HASH_KEY = "e2e-hash-key-0123456789";

const configOf = (metrics: string) => `policies:
  shop:
    categories:
      email:
        - regex: "[a-z0-9.]+@[a-z0-9-]+\\\\.[a-z]{2,}"
    endpoints:
      - matches: "**"
        config:
          email: {}
metrics:
${metrics}`;

const HASHED = configOf(`  max_series_per_metric: ${CAP}
  series_ttl: 0s
  labels:
    token: hash
  label_hash_key: ${HASH_KEY}
`);

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Sends one report per token, 50 calls in flight at a time; every call must succeed. */
async function report(client: LeaksignalClient, tokens: readonly string[]): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < tokens.length) {
      const token = tokens[next++] as string;
      const { error } = await unary((cb) => client.matchData(currentTransaction({ apiKey: "shop", token }), cb));
      if (error) throw error;
    }
  };
  await Promise.all(Array.from({ length: 50 }, worker));
}

async function exposition(agent: AgentProcess) {
  const text = await agent.metrics();
  const { samples } = parseExposition(text);
  const labelSets = (name: string) =>
    [...samples.keys()].filter((key) => key.startsWith(`${name}{`)).map((key) => /token="([^"]*)"/.exec(key)?.[1]);
  return { text, samples, labelSets };
}

describe("series cap, TTL and label modes on the running agent", () => {
  let agent: AgentProcess;
  let client: LeaksignalClient;

  beforeAll(async () => {
    agent = await AgentProcess.serving({ config: HASHED });
    client = leaksignalClient(agent.ingestionPort);
  });

  afterAll(async () => {
    client?.close();
    await agent?.stop();
  });

  it("keeps at most the cap of hashed tokens under 2,000 distinct ones", async () => {
    const tokens = Array.from({ length: 2_000 }, (_, i) => `user-${i}@example.com`);
    await report(client, tokens);

    const full = await exposition(agent);
    const exposed = full.labelSets("leaksignal_status_code");
    expect(exposed).toHaveLength(CAP);
    for (const token of exposed) expect(token).toMatch(/^[0-9a-f]{16}$/);
    // Which tokens got in depends on arrival order; whichever they are, they are keyed hashes of sent tokens.
    const hashes = new Set(tokens.map((t) => createHmac("sha256", HASH_KEY).update(t).digest("hex").slice(0, 16)));
    for (const token of exposed) expect(hashes.has(token as string)).toBe(true);
    expect(full.text).not.toContain("@example.com");
    expect(full.samples.get('leakagent_series_dropped_total{metric="leaksignal_status_code"}')).toBe(
      tokens.length - CAP,
    );
    expect(full.samples.get('leakagent_live_series{metric="leaksignal_response_size_bytes"}')).toBe(CAP);
    expect(full.samples.get('leakagent_match_inbound{deployment="shop"}')).toBe(tokens.length);
  });

  it("applies a changed metrics section on reload: raw tokens, a smaller cap", async () => {
    await writeFile(agent.configPath as string, configOf("  max_series_per_metric: 5\n  labels:\n    token: raw\n"));
    await agent.nextLog((line) => line.message.startsWith("configuration reloaded from"));
    await report(
      client,
      Array.from({ length: 20 }, (_, i) => `raw-${i}`),
    );
    const { labelSets } = await exposition(agent);
    expect(labelSets("leaksignal_status_code")).toHaveLength(5);
    for (const token of labelSets("leaksignal_status_code")) expect(token).toMatch(/^raw-\d+$/);
  });

  it("keeps the last good metrics section when the new one is invalid", async () => {
    const before = await exposition(agent);
    const [kept] = before.labelSets("leaksignal_status_code");
    const key = `leaksignal_status_code{deployment="shop",ip="`;
    const countOf = (e: Awaited<ReturnType<typeof exposition>>) =>
      [...e.samples].find(([k]) => k.startsWith(key) && k.includes(`token="${kept}"`))?.[1];

    await writeFile(agent.configPath as string, configOf("  labels:\n    token: hash\n"));
    const failure = await agent.nextLog((line) => line.message.startsWith("configuration reload failed"));
    expect(String(failure.error)).toContain("label_hash_key");
    await report(client, [kept as string]);
    // Same raw series, one more report: neither the mode nor the series changed.
    const after = await exposition(agent);
    expect(countOf(after)).toBe((countOf(before) ?? 0) + 1);
    expect(after.labelSets("leaksignal_status_code")).toEqual(before.labelSets("leaksignal_status_code"));
  });

  it("returns to baseline within TTL + sweep interval once traffic stops", async () => {
    await writeFile(agent.configPath as string, configOf(`  series_ttl: ${TTL_MS / 1000}s\n`));
    await agent.nextLog((line) => line.message.startsWith("configuration reloaded from"));
    await report(
      client,
      Array.from({ length: 50 }, (_, i) => `ttl-${i}`),
    );
    const lastReport = Date.now();
    expect((await exposition(agent)).labelSets("leaksignal_status_code").length).toBeGreaterThan(0);

    let gone: number | undefined;
    while (Date.now() - lastReport < TTL_MS + SWEEP_MS + 2_000) {
      const now = await exposition(agent);
      const left = ["leaksignal_status_code", "leaksignal_match_count_count", "leaksignal_response_size_bytes_count"];
      if (left.every((name) => now.labelSets(name).length === 0)) {
        gone = Date.now() - lastReport;
        expect(now.samples.get('leakagent_live_series{metric="leaksignal_response_size_bytes"}')).toBe(0);
        break;
      }
      await sleep(100);
    }
    console.info(`series back to baseline ${gone} ms after the last report (TTL ${TTL_MS} ms, sweep ${SWEEP_MS} ms)`);
    expect(gone).toBeDefined();
    // Polled every ~100 ms, plus the time of a scrape.
    expect(gone).toBeLessThanOrEqual(TTL_MS + SWEEP_MS + 500);
  });
});
