import { createHmac } from "node:crypto";
import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { renderMetrics } from "../../src/adapters/prometheus/exposition";
import { PrometheusTelemetry, sweepIntervalMs } from "../../src/adapters/prometheus/prometheus-telemetry";
import type { TransactionLabels, TransactionObservation } from "../../src/domain/telemetry/transaction";
import { DEFAULT_TELEMETRY_SETTINGS, type TelemetrySettings } from "../../src/ports/telemetry-sink.port";
import { type Exposition, parseExposition, sampleValue } from "./prometheus-support";

// The bounds of the config file's `metrics` section, on the real telemetry adapter and its real exposition.

const HASH_KEY = "a-test-key-of-24-chars!!";

const base: TransactionLabels = {
  deployment: "shop",
  policyPath: "/checkout",
  localService: "frontend",
  peerService: "payments",
  isOutbound: "true",
  ip: "10.0.0.9",
  token: "",
};

function observation(labels: Partial<TransactionLabels> = {}): TransactionObservation {
  return {
    labels: { ...base, ...labels },
    status: "200",
    matchTimeMs: 0.3,
    requestTimeMs: 4,
    responseTimeMs: 120,
    requestSizeBytes: 10,
    responseSizeBytes: 2048,
    matchCounts: [{ category: "email", inResponse: true, inHeader: false, count: 2 }],
  };
}

function telemetryWith(
  settings: Partial<TelemetrySettings>,
  clock?: () => number,
): { telemetry: PrometheusTelemetry; registry: Registry } {
  const registry = new Registry();
  const telemetry = new PrometheusTelemetry(registry, "test", clock);
  telemetry.configure({ ...DEFAULT_TELEMETRY_SETTINGS, seriesTtlMs: 0, ...settings });
  return { telemetry, registry };
}

async function expose(registry: Registry): Promise<Exposition> {
  return parseExposition(Buffer.concat(await renderMetrics(registry, "prometheus")).toString());
}

/** Distinct label sets of a family's samples (histograms: by their `_count` samples). */
function labelSets(exposition: Exposition, sample: string): Array<Record<string, string>> {
  return exposition.samples.filter((s) => s.name === sample).map((s) => Object.fromEntries(s.labels));
}

const HISTOGRAMS = [
  "leaksignal_match_time_ms",
  "leaksignal_request_time_ms",
  "leaksignal_response_time_ms",
  "leaksignal_request_size_bytes",
  "leaksignal_response_size_bytes",
];

describe("series cap", () => {
  it("holds every metric at the cap under 100,000 distinct tokens, counting what it drops", async () => {
    const cap = 1_000;
    const { telemetry, registry } = telemetryWith({ maxSeriesPerMetric: cap });
    const reports = 100_000;
    for (let i = 0; i < reports; i++) telemetry.transactionObserved(observation({ token: `user-${i}` }));

    const exposition = await expose(registry);
    for (const family of HISTOGRAMS) {
      expect(labelSets(exposition, `${family}_count`), family).toHaveLength(cap);
      expect(sampleValue(exposition, "leakagent_series_dropped_total", { metric: family })).toBe(reports - cap);
      expect(sampleValue(exposition, "leakagent_live_series", { metric: family })).toBe(cap);
    }
    expect(labelSets(exposition, "leaksignal_status_code")).toHaveLength(cap);
    expect(labelSets(exposition, "leaksignal_match_count_count")).toHaveLength(cap);
    for (const family of ["leaksignal_status_code", "leaksignal_match_count"]) {
      expect(sampleValue(exposition, "leakagent_series_dropped_total", { metric: family })).toBe(reports - cap);
    }
    // The first label sets stay, whole and exact; reports are all counted, kept or not.
    const tokens = labelSets(exposition, "leaksignal_status_code").map((labels) => labels.token);
    expect(tokens).toEqual(Array.from({ length: cap }, (_, i) => `user-${i}`));
    expect(sampleValue(exposition, "leakagent_match_inbound", { deployment: "shop" })).toBe(reports);
    // A label set already there keeps being updated at the cap.
    telemetry.transactionObserved(observation({ token: "user-0" }));
    const after = await expose(registry);
    expect(sampleValue(after, "leaksignal_status_code", { ...labelsOf({ token: "user-0" }), status: "200" })).toBe(2);
  });

  it("caps status and match count series on their own", async () => {
    const { telemetry, registry } = telemetryWith({ maxSeriesPerMetric: 3 });
    for (const status of ["200", "404", "500", "503"]) {
      telemetry.transactionObserved({ ...observation(), status, matchCounts: [] });
    }
    for (const category of ["email", "ssn", "phone", "card"]) {
      telemetry.transactionObserved({
        ...observation(),
        matchCounts: [{ category, inResponse: false, inHeader: true, count: 1 }],
      });
    }
    const exposition = await expose(registry);
    expect(labelSets(exposition, "leaksignal_status_code").map((l) => l.status)).toEqual(["200", "404", "500"]);
    expect(sampleValue(exposition, "leakagent_series_dropped_total", { metric: "leaksignal_status_code" })).toBe(1);
    expect(labelSets(exposition, "leaksignal_match_count_count").map((l) => l.category)).toEqual([
      "email",
      "ssn",
      "phone",
    ]);
    expect(sampleValue(exposition, "leakagent_series_dropped_total", { metric: "leaksignal_match_count" })).toBe(1);
  });

  it("caps the policy stream counters", async () => {
    const { telemetry, registry } = telemetryWith({ maxSeriesPerMetric: 2 });
    for (let i = 0; i < 5; i++) {
      telemetry.proxyTurnedAway("unknown", `10.0.0.${i}`);
      telemetry.policyStreamOpened("shop", `10.0.0.${i}`, "p1");
      telemetry.policySent("shop", `p${i}`);
    }
    const exposition = await expose(registry);
    for (const family of [
      "leakagent_policy_update_turnaway",
      "leakagent_policy_update_init",
      "leakagent_policy_update_send",
    ]) {
      expect(labelSets(exposition, family), family).toHaveLength(2);
      expect(sampleValue(exposition, "leakagent_series_dropped_total", { metric: family })).toBe(3);
    }
  });
});

describe("series TTL", () => {
  it("sweeps at a tenth of the TTL, between once a second and once a minute", () => {
    expect(sweepIntervalMs(2_000)).toBe(1_000);
    expect(sweepIntervalMs(30_000)).toBe(3_000);
    expect(sweepIntervalMs(600_000)).toBe(60_000);
    expect(sweepIntervalMs(86_400_000)).toBe(60_000);
  });

  it("removes each series not updated within the TTL, and counts it afresh when it comes back", async () => {
    const ttl = 60_000;
    let now = 1_000_000;
    const { telemetry, registry } = telemetryWith({ seriesTtlMs: ttl }, () => now);
    const baseline = (await expose(registry)).samples.length;

    telemetry.transactionObserved(observation({ token: "idle" }));
    telemetry.transactionObserved(observation({ token: "busy" }));
    telemetry.policyStreamOpened("shop", "10.0.0.1", "p1");
    // Half a TTL later only the busy label set is updated, and only its status 500 and request-header matches.
    now += ttl / 2;
    telemetry.transactionObserved({
      ...observation({ token: "busy" }),
      status: "500",
      matchCounts: [{ category: "ssn", inResponse: false, inHeader: true, count: 1 }],
    });

    telemetry.sweep(now + ttl / 2);
    const atTtl = await expose(registry);
    expect(labelSets(atTtl, "leaksignal_request_size_bytes_count").map((l) => l.token)).toEqual(["idle", "busy"]);

    telemetry.sweep(now + ttl / 2 + 1);
    const swept = await expose(registry);
    expect(labelSets(swept, "leaksignal_request_size_bytes_count").map((l) => l.token)).toEqual(["busy"]);
    expect(labelSets(swept, "leaksignal_status_code").map((l) => l.status)).toEqual(["500"]);
    expect(labelSets(swept, "leaksignal_match_count_count").map((l) => l.category)).toEqual(["ssn"]);
    expect(labelSets(swept, "leakagent_policy_update_init")).toHaveLength(0);
    expect(sampleValue(swept, "leakagent_live_series", { metric: "leaksignal_status_code" })).toBe(1);
    expect(sampleValue(swept, "leakagent_live_series", { metric: "leaksignal_match_count" })).toBe(1);

    telemetry.sweep(now + ttl + 1);
    // leakagent_match_inbound{deployment} stays: deployments are bounded by the config.
    expect((await expose(registry)).samples.length).toBe(baseline + 1);

    // Back after removal: a new series from zero, found again through the pruned lookup levels.
    telemetry.transactionObserved(observation({ token: "idle" }));
    const back = await expose(registry);
    expect(sampleValue(back, "leaksignal_status_code", { ...labelsOf({ token: "idle" }), status: "200" })).toBe(1);
    expect(sampleValue(back, "leakagent_live_series", { metric: "leaksignal_request_size_bytes" })).toBe(1);
  });

  it("frees room under the cap", async () => {
    let now = 0;
    const { telemetry, registry } = telemetryWith({ maxSeriesPerMetric: 1, seriesTtlMs: 1_000 }, () => now);
    telemetry.transactionObserved(observation({ token: "first" }));
    telemetry.transactionObserved(observation({ token: "second" }));
    now = 1_001;
    telemetry.sweep(now);
    telemetry.transactionObserved(observation({ token: "second" }));
    const exposition = await expose(registry);
    expect(labelSets(exposition, "leaksignal_request_size_bytes_count").map((l) => l.token)).toEqual(["second"]);
  });
});

describe("ip and token label modes", () => {
  const hmac = (key: string, value: string) => createHmac("sha256", key).update(value).digest("hex").slice(0, 16);

  it("hash: a keyed hash, the same in every instance with the key, different under another key", async () => {
    const settings = { ipLabel: "hash", tokenLabel: "hash", labelHashKey: HASH_KEY } as const;
    const first = telemetryWith(settings);
    const restarted = telemetryWith(settings);
    const otherKey = telemetryWith({ ...settings, labelHashKey: "another-key-of-24-chars!" });
    for (const { telemetry } of [first, restarted, otherKey]) {
      telemetry.transactionObserved(observation({ token: "alice@example.com" }));
      telemetry.transactionObserved(observation({ ip: "", token: "" }));
      telemetry.proxyTurnedAway("unknown", "10.0.0.9");
    }
    const [a, b, c] = await Promise.all([first, restarted, otherKey].map(({ registry }) => expose(registry)));
    const tokens = (e: Exposition) => labelSets(e, "leaksignal_request_size_bytes_count").map((l) => [l.ip, l.token]);
    expect(tokens(a as Exposition)).toEqual([
      [hmac(HASH_KEY, "10.0.0.9"), hmac(HASH_KEY, "alice@example.com")],
      // Nothing sent stays nothing.
      ["", ""],
    ]);
    expect(tokens(b as Exposition)).toEqual(tokens(a as Exposition));
    expect(tokens(c as Exposition)[0]).not.toEqual(tokens(a as Exposition)[0]);
    expect(labelSets(a as Exposition, "leakagent_policy_update_turnaway")).toEqual([
      { deployment: "unknown", ip: hmac(HASH_KEY, "10.0.0.9") },
    ]);
    const text = Buffer.concat(await renderMetrics(first.registry, "prometheus")).toString();
    expect(text).not.toContain("alice@example.com");
    expect(text).not.toContain("10.0.0.9");
  });

  it("drop: the label is exposed empty, and its label sets merge", async () => {
    const { telemetry, registry } = telemetryWith({ tokenLabel: "drop" });
    telemetry.transactionObserved(observation({ token: "alice" }));
    telemetry.transactionObserved(observation({ token: "bob" }));
    const exposition = await expose(registry);
    expect(labelSets(exposition, "leaksignal_status_code")).toEqual([{ ...labelsOf({ token: "" }), status: "200" }]);
    expect(sampleValue(exposition, "leaksignal_status_code", { ...labelsOf({ token: "" }), status: "200" })).toBe(2);
  });

  it("a changed mode or key starts the affected metrics afresh; other changes keep every series", async () => {
    const { telemetry, registry } = telemetryWith({});
    telemetry.transactionObserved(observation({ token: "alice" }));
    telemetry.policySent("shop", "p1");
    telemetry.configure({ ...DEFAULT_TELEMETRY_SETTINGS, seriesTtlMs: 0, maxSeriesPerMetric: 5 });
    expect(labelSets(await expose(registry), "leaksignal_status_code")).toHaveLength(1);

    telemetry.configure({ ...DEFAULT_TELEMETRY_SETTINGS, tokenLabel: "hash", labelHashKey: HASH_KEY });
    const switched = await expose(registry);
    expect(labelSets(switched, "leaksignal_status_code")).toHaveLength(0);
    expect(sampleValue(switched, "leakagent_live_series", { metric: "leaksignal_status_code" })).toBe(0);
    expect(sampleValue(switched, "leakagent_policy_update_send", { deployment: "shop", policy: "p1" })).toBe(1);
    telemetry.transactionObserved(observation({ token: "alice" }));
    expect(labelSets(await expose(registry), "leaksignal_status_code").map((l) => l.token)).toEqual([
      hmac(HASH_KEY, "alice"),
    ]);
  });
});

/** The exposed transaction labels of `base` with some values changed. */
function labelsOf(labels: Partial<TransactionLabels>): Record<string, string> {
  const all = { ...base, ...labels };
  return {
    deployment: all.deployment,
    policy_path: all.policyPath,
    local_service: all.localService,
    peer_service: all.peerService,
    is_outbound: all.isOutbound,
    ip: all.ip,
    token: all.token,
  };
}
