import { Registry } from "prom-client";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { MetricsServer } from "../../src/adapters/prometheus/metrics-server";
import {
  MATCH_COUNT_BUCKETS,
  PrometheusTelemetry,
  SIZE_BUCKETS_BYTES,
  TIME_BUCKETS_MS,
} from "../../src/adapters/prometheus/prometheus-telemetry";
import type { TransactionLabels, TransactionObservation } from "../../src/domain/telemetry/transaction";
import {
  collectingLogger,
  type Exposition,
  OPENMETRICS_ACCEPT,
  parseExposition,
  sampleValue,
  scrape,
} from "./prometheus-support";

const VERSION = "9.8.7-test";

const TRANSACTION_LABELS = [
  "deployment",
  "policy_path",
  "local_service",
  "peer_service",
  "is_outbound",
  "ip",
  "token",
] as const;

/** Metrics.md: name, type and label names in the documented order. */
const DOCUMENTED: readonly { name: string; type: "counter" | "gauge" | "histogram"; labels: readonly string[] }[] = [
  { name: "leakagent_match_inbound", type: "counter", labels: ["deployment"] },
  { name: "leakagent_proxy_pull", type: "counter", labels: ["key"] },
  { name: "leakagent_policy_update_turnaway", type: "counter", labels: ["deployment", "ip"] },
  { name: "leakagent_policy_update_init", type: "counter", labels: ["deployment", "ip", "policy"] },
  { name: "leakagent_policy_update_send", type: "counter", labels: ["deployment", "policy"] },
  { name: "leakagent_policy_update_waiting", type: "gauge", labels: ["deployment"] },
  { name: "leaksignal_status_code", type: "counter", labels: [...TRANSACTION_LABELS, "status"] },
  { name: "leaksignal_match_time_ms", type: "histogram", labels: TRANSACTION_LABELS },
  { name: "leaksignal_request_time_ms", type: "histogram", labels: TRANSACTION_LABELS },
  { name: "leaksignal_response_time_ms", type: "histogram", labels: TRANSACTION_LABELS },
  { name: "leaksignal_request_size_bytes", type: "histogram", labels: TRANSACTION_LABELS },
  { name: "leaksignal_response_size_bytes", type: "histogram", labels: TRANSACTION_LABELS },
  {
    name: "leaksignal_match_count",
    type: "histogram",
    labels: [...TRANSACTION_LABELS, "in_response", "in_header", "category"],
  },
];

const frontend: TransactionLabels = {
  deployment: "shop",
  policyPath: "/checkout",
  localService: "frontend-v1",
  peerService: "cluster.local/shop/payments",
  isOutbound: "true",
  ip: "10.0.0.9",
  token: "",
};
const reviews: TransactionLabels = { ...frontend, localService: "reviews", isOutbound: "false", ip: "10.0.0.10" };

function transaction(
  labels: TransactionLabels,
  overrides: Partial<TransactionObservation> = {},
): TransactionObservation {
  return {
    labels,
    status: "200",
    matchTimeMs: 0.3,
    requestTimeMs: 4,
    responseTimeMs: 120,
    requestSizeBytes: 0,
    responseSizeBytes: 2048,
    matchCounts: [],
    ...overrides,
  };
}

const FED: readonly TransactionObservation[] = [
  transaction(frontend, {
    matchCounts: [
      { category: "email", inResponse: true, inHeader: false, count: 3 },
      { category: "email", inResponse: false, inHeader: true, count: 1 },
    ],
  }),
  transaction(frontend, {
    status: "503",
    matchTimeMs: 2.25,
    requestTimeMs: 61_000,
    responseTimeMs: undefined,
    requestSizeBytes: 700,
    responseSizeBytes: 70_000_000,
    matchCounts: [{ category: "email", inResponse: true, inHeader: false, count: 1500 }],
  }),
  transaction(frontend, { status: undefined, matchTimeMs: undefined, requestTimeMs: 0.05, responseSizeBytes: 0 }),
  transaction(reviews, { status: "200", responseTimeMs: 7.5 }),
];

/** The text-format label set of a transaction series. */
function seriesLabels(labels: TransactionLabels): Record<string, string> {
  return {
    deployment: labels.deployment,
    policy_path: labels.policyPath,
    local_service: labels.localService,
    peer_service: labels.peerService,
    is_outbound: labels.isOutbound,
    ip: labels.ip,
    token: labels.token,
  };
}

/** Asserts one histogram series holds exactly `values`. */
function expectHistogram(
  exposition: Exposition,
  name: string,
  labels: Record<string, string>,
  buckets: readonly number[],
  values: readonly number[],
): void {
  expect(sampleValue(exposition, `${name}_count`, labels), `${name}_count`).toBe(values.length);
  expect(sampleValue(exposition, `${name}_sum`, labels), `${name}_sum`).toBeCloseTo(
    values.reduce((a, b) => a + b, 0),
    9,
  );
  for (const bound of buckets) {
    expect(sampleValue(exposition, `${name}_bucket`, { ...labels, le: String(bound) }), `${name} le=${bound}`).toBe(
      values.filter((value) => value <= bound).length,
    );
  }
  expect(sampleValue(exposition, `${name}_bucket`, { ...labels, le: "+Inf" })).toBe(values.length);
}

describe("Prometheus exposition", () => {
  let registry: Registry;
  let telemetry: PrometheusTelemetry;
  let server: MetricsServer;
  let port: number;

  beforeEach(async () => {
    registry = new Registry();
    telemetry = new PrometheusTelemetry(registry, VERSION);
    server = new MetricsServer({ host: "127.0.0.1", port: 0 }, registry, collectingLogger());
    await server.start();
    port = server.address?.port ?? 0;
  });

  afterEach(() => server.stop());

  async function scrapeBoth(): Promise<{ text: Exposition; openMetrics: Exposition; openMetricsBody: string }> {
    const text = await scrape(port);
    expect(text.status).toBe(200);
    expect(text.contentType).toBe("text/plain; version=0.0.4; charset=utf-8");
    const openMetrics = await scrape(port, "/metrics", { headers: { accept: OPENMETRICS_ACCEPT } });
    expect(openMetrics.status).toBe(200);
    expect(openMetrics.contentType).toBe("application/openmetrics-text; version=1.0.0; charset=utf-8");
    return {
      text: parseExposition(text.body),
      openMetrics: parseExposition(openMetrics.body),
      openMetricsBody: openMetrics.body,
    };
  }

  it("exposes the documented families under their names, types and label order", async () => {
    for (const observation of FED) telemetry.transactionObserved(observation);
    telemetry.policyStreamOpened("shop", "10.0.0.9", "p1");
    telemetry.policyStreamsWaiting("shop", 1);
    telemetry.policySent("shop", "p1");
    telemetry.proxyTurnedAway("nope", "10.0.0.66");
    telemetry.proxyPulled("2025_01_29/leaksignal.wasm");
    const { text, openMetrics } = await scrapeBoth();

    for (const { name, type, labels } of DOCUMENTED) {
      expect(text.types.get(name), name).toBe(type);
      // Legacy un-suffixed counters are `unknown` in OpenMetrics, so their samples keep their names.
      expect(openMetrics.types.get(name), name).toBe(type === "counter" ? "unknown" : type);
      for (const exposition of [text, openMetrics]) {
        const samples = exposition.samples.filter((sample) => sample.family === name);
        expect(samples.length, name).toBeGreaterThan(0);
        for (const sample of samples) {
          // prom-client puts a bucket's `le` first, in both formats.
          const expected = sample.name.endsWith("_bucket") ? ["le", ...labels] : labels;
          expect(
            sample.labels.map(([label]) => label),
            sample.name,
          ).toEqual(expected);
        }
      }
    }
  });

  it("gives every series the same name in both formats", async () => {
    for (const observation of FED) telemetry.transactionObserved(observation);
    telemetry.requestRejected("malformed");
    const { text, openMetrics } = await scrapeBoth();

    const names = (exposition: Exposition) => new Set(exposition.samples.map((sample) => sample.name));
    // Process metrics move between scrapes, so compare names and not values.
    expect([...names(openMetrics)].sort()).toEqual([...names(text)].sort());
    expect(names(text)).toContain("leaksignal_status_code");
    expect(names(text)).toContain("leakagent_rejected_total");
    expect(names(text)).toContain("process_cpu_seconds_total");

    expect(text.types.get("leakagent_rejected_total")).toBe("counter");
    expect(openMetrics.types.get("leakagent_rejected")).toBe("counter");
    expect(text.types.get("process_cpu_seconds_total")).toBe("counter");
    expect(openMetrics.types.get("process_cpu_seconds")).toBe("counter");

    // An OpenMetrics scrape must not rename anything for the next text scrape.
    const again = parseExposition((await scrape(port)).body);
    expect(again.types.get("leakagent_rejected_total")).toBe("counter");
    expect(sampleValue(again, "leakagent_rejected_total", { reason: "malformed" })).toBe(1);
  });

  it("serves valid OpenMetrics when asked for it", async () => {
    for (const observation of FED) telemetry.transactionObserved(observation);
    telemetry.requestRejected("unknown_deployment");
    const { openMetrics, openMetricsBody } = await scrapeBoth();

    expect(openMetricsBody.endsWith("\n# EOF\n")).toBe(true);
    expect(openMetricsBody.split("\n").slice(0, -1)).not.toContain("");
    const suffixes: Record<string, readonly string[]> = {
      counter: ["_total"],
      gauge: [""],
      unknown: [""],
      histogram: ["_bucket", "_sum", "_count"],
    };
    for (const sample of openMetrics.samples) {
      const type = openMetrics.types.get(sample.family) ?? "";
      expect(suffixes[type], `${sample.name} (${type})`).toBeDefined();
      expect(
        suffixes[type]?.map((suffix) => sample.family + suffix),
        sample.name,
      ).toContain(sample.name);
    }
  });

  it("counts transactions, statuses and match counts from what was fed", async () => {
    for (const observation of FED) telemetry.transactionObserved(observation);

    const { text, openMetrics } = await scrapeBoth();
    for (const exposition of [text, openMetrics]) {
      expect(sampleValue(exposition, "leakagent_match_inbound", { deployment: "shop" })).toBe(FED.length);

      for (const labels of [frontend, reviews]) {
        const fed = FED.filter((observation) => observation.labels === labels);
        const series = seriesLabels(labels);
        for (const status of ["200", "503"]) {
          const count = fed.filter((observation) => observation.status === status).length;
          expect(sampleValue(exposition, "leaksignal_status_code", { ...series, status })).toBe(count || undefined);
        }
        const defined = (values: (number | undefined)[]) => values.filter((value) => value !== undefined);
        expectHistogram(
          exposition,
          "leaksignal_match_time_ms",
          series,
          TIME_BUCKETS_MS,
          defined(fed.map((o) => o.matchTimeMs)),
        );
        expectHistogram(
          exposition,
          "leaksignal_request_time_ms",
          series,
          TIME_BUCKETS_MS,
          defined(fed.map((o) => o.requestTimeMs)),
        );
        expectHistogram(
          exposition,
          "leaksignal_response_time_ms",
          series,
          TIME_BUCKETS_MS,
          defined(fed.map((o) => o.responseTimeMs)),
        );
        expectHistogram(
          exposition,
          "leaksignal_request_size_bytes",
          series,
          SIZE_BUCKETS_BYTES,
          fed.map((o) => o.requestSizeBytes),
        );
        expectHistogram(
          exposition,
          "leaksignal_response_size_bytes",
          series,
          SIZE_BUCKETS_BYTES,
          fed.map((o) => o.responseSizeBytes),
        );
        for (const inResponse of [true, false]) {
          for (const inHeader of [true, false]) {
            const counts = fed.flatMap((o) =>
              o.matchCounts.filter((m) => m.inResponse === inResponse && m.inHeader === inHeader).map((m) => m.count),
            );
            const matchLabels = {
              ...series,
              in_response: String(inResponse),
              in_header: String(inHeader),
              category: "email",
            };
            if (counts.length === 0) {
              expect(sampleValue(exposition, "leaksignal_match_count_count", matchLabels)).toBeUndefined();
            } else {
              expectHistogram(exposition, "leaksignal_match_count", matchLabels, MATCH_COUNT_BUCKETS, counts);
            }
          }
        }
      }
    }
  });

  it("exposes the same values in OpenMetrics", async () => {
    for (const observation of FED) telemetry.transactionObserved(observation);
    const { text, openMetrics } = await scrapeBoth();
    const ours = (exposition: Exposition) =>
      exposition.samples
        .filter((sample) => sample.name.startsWith("leaksignal_") || sample.name.startsWith("leakagent_"))
        .map((sample) => `${sample.name}{${[...sample.labels].sort().join(";")}} ${sample.value}`)
        .sort();
    expect(ours(openMetrics)).toEqual(ours(text));
  });

  it("follows the policy streams, the proxies and rejections", async () => {
    telemetry.policyStreamOpened("shop", "10.0.0.9", "p1");
    telemetry.policyStreamOpened("shop", "10.0.0.9", "p1");
    telemetry.policyStreamOpened("shop", "10.0.0.10", "p2");
    telemetry.policySent("shop", "p2");
    telemetry.proxyTurnedAway("nope", "10.0.0.66");
    telemetry.proxyPulled("v1/leaksignal.wasm");
    telemetry.requestRejected("malformed");
    telemetry.requestRejected("malformed");
    telemetry.requestRejected("message_too_large");

    telemetry.policyStreamsWaiting("shop", 1);
    telemetry.policyStreamsWaiting("shop", 2);
    telemetry.policyStreamsWaiting("blog", 1);
    let { text } = await scrapeBoth();
    expect(sampleValue(text, "leakagent_policy_update_waiting", { deployment: "shop" })).toBe(2);
    expect(sampleValue(text, "leakagent_policy_update_waiting", { deployment: "blog" })).toBe(1);

    telemetry.policyStreamsWaiting("shop", 1);
    telemetry.policyStreamsWaiting("blog", 0);
    ({ text } = await scrapeBoth());
    expect(sampleValue(text, "leakagent_policy_update_waiting", { deployment: "shop" })).toBe(1);
    expect(sampleValue(text, "leakagent_policy_update_waiting", { deployment: "blog" })).toBe(0);

    expect(
      sampleValue(text, "leakagent_policy_update_init", { deployment: "shop", ip: "10.0.0.9", policy: "p1" }),
    ).toBe(2);
    expect(
      sampleValue(text, "leakagent_policy_update_init", { deployment: "shop", ip: "10.0.0.10", policy: "p2" }),
    ).toBe(1);
    expect(sampleValue(text, "leakagent_policy_update_send", { deployment: "shop", policy: "p2" })).toBe(1);
    expect(sampleValue(text, "leakagent_policy_update_turnaway", { deployment: "nope", ip: "10.0.0.66" })).toBe(1);
    expect(sampleValue(text, "leakagent_proxy_pull", { key: "v1/leaksignal.wasm" })).toBe(1);
    expect(sampleValue(text, "leakagent_rejected_total", { reason: "malformed" })).toBe(2);
    expect(sampleValue(text, "leakagent_rejected_total", { reason: "message_too_large" })).toBe(1);
  });

  it("exposes the build and the process", async () => {
    const { text, openMetrics } = await scrapeBoth();
    for (const exposition of [text, openMetrics]) {
      expect(
        sampleValue(exposition, "leakagent_build_info", { version: VERSION, node_version: process.versions.node }),
      ).toBe(1);
      expect(exposition.types.get("process_start_time_seconds")).toBe("gauge");
      expect(exposition.types.get("nodejs_heap_size_used_bytes")).toBe("gauge");
    }
  });

  it("escapes label values that carry quotes, backslashes and newlines", async () => {
    const odd = { ...frontend, policyPath: 'a"b\\c\nd', token: "é 🔑" };
    telemetry.transactionObserved(transaction(odd));
    const { text, openMetrics } = await scrapeBoth();
    for (const exposition of [text, openMetrics]) {
      expect(sampleValue(exposition, "leaksignal_status_code", { ...seriesLabels(odd), status: "200" })).toBe(1);
    }
  });
});
