import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MATCH_COUNT_BUCKETS, TIME_BUCKETS_MS } from "../../src/adapters/prometheus/prometheus-telemetry";
import type { MatchDataRequest, MatchDataResponse } from "../../src/generated/leaksignal";
import type { LeaksignalClient } from "../generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { queriesOf, shippedDashboards, substitute } from "../support/dashboards";
import { parseExposition } from "../support/exposition";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { type InstantSample, PROMETHEUS_MISSING, PrometheusServer } from "../support/prometheus";
import { currentTransaction, legacyTransaction } from "../support/transactions";

// A real Prometheus scrapes the built agent every second, as it would in production (it negotiates
// OpenMetrics), while the test drives the agent over gRPC. Every PromQL expression of the Grafana
// dashboards users already have is evaluated against what Prometheus stored, with the values the
// traffic implies; so is every expression of the dashboards under deploy/grafana.

if (PROMETHEUS_MISSING) console.warn(`skipping the Prometheus tests: ${PROMETHEUS_MISSING}`);

const CONFIG = `policies:
  shop:
    categories:
      email:
        - regex: "[a-z0-9.]+@[a-z0-9-]+\\\\.[a-z]{2,}"
    endpoints:
      - matches: "**"
        config:
          email: {}
  legacy:
    categories:
      ssn:
        - regex: "\\\\d{3}-\\\\d{2}-\\\\d{4}"
    endpoints:
      - matches: "**"
        config:
          ssn: {}
`;

/** Grafana's $__rate_interval for a 1 s scrape interval: four scrape intervals. */
const RATE_INTERVAL = "4s";
const SCRAPE_INTERVAL_S = 1;

interface ShopReport {
  service: string;
  path: string;
  outbound: boolean;
  status: string;
  requestMs: number;
  responseMs: number;
  requestBytes: number;
  responseBytes: number;
  /** Reports of this kind in each batch. */
  count: number;
}

const CHECKOUT = {
  service: "checkout",
  path: "shop.example.com/cart/checkout",
  outbound: true,
  requestMs: 4,
  responseMs: 20,
  requestBytes: 512,
  responseBytes: 4096,
};
const CART = {
  service: "cart",
  path: "shop.example.com/cart/items",
  outbound: true,
  requestMs: 40,
  responseMs: 200,
  requestBytes: 100,
  responseBytes: 300,
};
/** One batch of the shop's traffic (current proxies). */
const SHOP_REPORTS: readonly ShopReport[] = [
  { ...CHECKOUT, status: "200", count: 3 },
  { ...CHECKOUT, status: "503", count: 1 },
  { ...CART, status: "404", count: 2 },
  // Inbound: left out by the dashboards that filter is_outbound="true".
  { ...CART, outbound: false, status: "200", count: 1 },
];
const SHOP_PER_BATCH = SHOP_REPORTS.reduce((sum, r) => sum + r.count, 0);
const LEGACY_PER_BATCH = 2;
/** Matches every shop report carries (currentTransaction): category → matches in the response body. */
const EMAIL_MATCHES_IN_RESPONSE_BODY = 2;
/** category_performance_us of every shop report: 100 + 400 + 1000 + 500 µs. */
const SHOP_MATCH_TIME_MS = 2;

const MS = 1_000_000n;

function shopReport(report: ShopReport): MatchDataRequest {
  const base = currentTransaction({ apiKey: "shop" });
  const request = base.request;
  const response = base.response;
  if (!request || !response) throw new Error("currentTransaction has request and response components");
  const start = request.timeHeaderStart;
  const requestEnd = start + BigInt(report.requestMs) * MS;
  const responseEnd = requestEnd + BigInt(report.responseMs) * MS;
  return {
    ...base,
    policyPath: report.path,
    environment: { ISTIO_META_WORKLOAD_NAME: report.service },
    connectionInfo: { ...base.connectionInfo, listener_direction: report.outbound ? "2" : "1" },
    request: { ...request, timeBodyStart: start, timeBodyEnd: requestEnd, bodySize: BigInt(report.requestBytes) },
    response: {
      ...response,
      timeHeaderStart: requestEnd,
      timeBodyStart: requestEnd,
      timeBodyEnd: responseEnd,
      bodySize: BigInt(report.responseBytes),
      headerMatches: response.headerMatches.map((header) =>
        header.name === ":status" ? { ...header, header: Buffer.from(report.status) } : header,
      ),
    },
  };
}

/** histogram_quantile over observations that all have one value: linear interpolation inside its bucket. */
function quantileOf(q: number, value: number, bounds: readonly number[]): number {
  const index = bounds.findIndex((bound) => value <= bound);
  const upper = bounds[index] as number;
  const lower = index === 0 ? 0 : (bounds[index - 1] as number);
  return lower + (upper - lower) * q;
}

/** Result values keyed by the given labels' values, e.g. `checkout|503`. */
function byLabels(samples: readonly InstantSample[], ...labels: string[]): Record<string, number> {
  return Object.fromEntries(samples.map((s) => [labels.map((l) => s.metric[l] ?? "").join("|"), s.value]));
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe.skipIf(PROMETHEUS_MISSING)("a real Prometheus scraping the agent", () => {
  let agent: AgentProcess;
  let prometheus: PrometheusServer;
  let client: LeaksignalClient;
  const streams: PolicyStreamClient[] = [];
  const policyIds = { shop: "", legacy: "" };
  let batches = 0;
  /** When the queries are evaluated: just after the scrape that saw the last batch whole. */
  let evaluatedAt = 0;
  /** Seconds between that scrape and the one before, which saw none of the last batch: irate's divisor. */
  let scrapeGap = 0;
  let startedPrometheusMs = 0;

  const query = (expr: string) => prometheus.query(expr, evaluatedAt);
  /** What irate() gives for `perBatch` events in the last batch. */
  const perSecond = (perBatch: number) => perBatch / scrapeGap;

  async function matchData(report: MatchDataRequest): Promise<void> {
    const { error } = await unary<MatchDataResponse>((cb) => client.matchData(report, cb));
    if (error) throw error;
  }

  async function openPolicyStream(deployment: "shop" | "legacy"): Promise<void> {
    const stream = new PolicyStreamClient(
      client,
      deployment === "shop" ? { apiKey: "shop" } : { deploymentName: "legacy" },
    );
    streams.push(stream);
    const [response] = await stream.received(1);
    policyIds[deployment] = response?.policy?.policyId ?? "";
  }

  async function turnedAway(): Promise<void> {
    const ended = await new PolicyStreamClient(client, { apiKey: "intruder" }).ended;
    if (ended.code !== GrpcStatus.UNAUTHENTICATED) throw new Error(`unknown key not turned away: ${ended.code}`);
  }

  async function sendBatch(): Promise<void> {
    const pull = fetch(`http://127.0.0.1:${agent.ingestionPort}/proxy/v1/leaksignal.wasm`).then((r) => r.text());
    await Promise.all([
      ...SHOP_REPORTS.flatMap((report) => Array.from({ length: report.count }, () => matchData(shopReport(report)))),
      ...Array.from({ length: LEGACY_PER_BATCH }, () => matchData(legacyTransaction({ deploymentName: "legacy" }))),
      openPolicyStream("shop"),
      openPolicyStream("legacy"),
      turnedAway(),
      pull,
    ]);
    batches++;
  }

  /** Scrape times so far (the `up` series gets a sample at every scrape), in seconds. */
  async function scrapeTimes(): Promise<number[]> {
    return (await prometheus.samples('up{job="leakagent"}', 30)).map(([time]) => time);
  }

  async function scrapedAfter(time: number): Promise<number> {
    for (const deadline = Date.now() + 10_000; Date.now() < deadline; await sleep(50)) {
      const after = (await scrapeTimes()).find((t) => t > time);
      if (after !== undefined) return after;
    }
    throw new Error("Prometheus stopped scraping the agent");
  }

  /**
   * Sends a batch right after a scrape, so that the next scrape sees all of it and the previous one none:
   * then irate() over the last two samples covers exactly one batch.
   */
  async function sendBetweenScrapes(): Promise<void> {
    for (let attempt = 0; attempt < 5; attempt++) {
      const last = (await scrapeTimes()).at(-1) ?? 0;
      const nowS = Date.now() / 1000;
      const next = last + Math.ceil((nowS + 0.05 - last) / SCRAPE_INTERVAL_S) * SCRAPE_INTERVAL_S;
      await sleep((next + 0.15 - Date.now() / 1000) * 1000);
      const before = await scrapedAfter(next - 0.2);
      await sendBatch();
      const sentBy = Date.now() / 1000;
      const seenAt = await scrapedAfter(before);
      if (sentBy < seenAt - 0.05) {
        evaluatedAt = seenAt + 0.5;
        scrapeGap = seenAt - before;
        return;
      }
    }
    throw new Error("could not send a batch between two scrapes");
  }

  beforeAll(async () => {
    agent = await AgentProcess.serving({ config: CONFIG });
    client = leaksignalClient(agent.ingestionPort);
    const started = Date.now();
    prometheus = await PrometheusServer.start([`127.0.0.1:${agent.metricsPort}`], SCRAPE_INTERVAL_S);
    startedPrometheusMs = Date.now() - started;
    // Prometheus discovers its static targets within ~5 s; the first batch creates every series.
    await sendBatch();
    const firstBatchSent = Date.now() / 1000;
    await scrapedAfter(firstBatchSent);
    await sendBetweenScrapes();
    console.info(
      `Prometheus ready in ${startedPrometheusMs} ms; first scrape with data after ${Date.now() - started} ms`,
    );
  }, 60_000);

  afterAll(async () => {
    for (const stream of streams) stream.cancel();
    client?.close();
    await prometheus?.stop();
    await agent?.stop();
  });

  it("scrapes the agent as a healthy target, and irate() covers exactly the last batch", async () => {
    const targets = await prometheus.api<{
      activeTargets: Array<{ health: string; lastError: string; scrapeUrl: string }>;
    }>("/api/v1/targets");
    expect(targets.activeTargets).toHaveLength(1);
    expect(targets.activeTargets[0]?.health).toBe("up");
    expect(targets.activeTargets[0]?.lastError).toBe("");
    expect(targets.activeTargets[0]?.scrapeUrl).toBe(`http://127.0.0.1:${agent.metricsPort}/metrics`);
    const inbound = byLabels(await query("leakagent_match_inbound"), "deployment");
    expect(inbound).toEqual({ shop: batches * SHOP_PER_BATCH, legacy: batches * LEGACY_PER_BATCH });
    const previous = byLabels(await prometheus.query("leakagent_match_inbound", evaluatedAt - scrapeGap), "deployment");
    expect(previous).toEqual({ shop: (batches - 1) * SHOP_PER_BATCH, legacy: (batches - 1) * LEGACY_PER_BATCH });
  });

  it("stores the documented series names although it negotiated OpenMetrics", async () => {
    const stored = (await query('count by (__name__) ({job="leakagent", __name__=~"leaksignal_.+|leakagent_.+"})'))
      .map((s) => s.metric.__name__ as string)
      .sort();
    // Whatever the agent exposes in the classic text format is what Prometheus stores, name for name.
    const exposed = [...parseExposition(await agent.metrics()).samples.keys()]
      .map((key) => key.split("{")[0] as string)
      .filter((name) => /^leak(signal|agent)_/.test(name));
    expect(stored).toEqual([...new Set(exposed)].sort());

    const legacyCounters = [
      "leaksignal_status_code",
      "leakagent_match_inbound",
      "leakagent_proxy_pull",
      "leakagent_policy_update_turnaway",
      "leakagent_policy_update_init",
      "leakagent_policy_update_send",
    ];
    const histograms = [
      "leaksignal_match_time_ms",
      "leaksignal_request_time_ms",
      "leaksignal_response_time_ms",
      "leaksignal_request_size_bytes",
      "leaksignal_response_size_bytes",
      "leaksignal_match_count",
    ];
    const documented = [
      ...legacyCounters,
      "leakagent_policy_update_waiting",
      ...histograms.flatMap((h) => [`${h}_bucket`, `${h}_sum`, `${h}_count`]),
      "leakagent_rejected_total",
      "leakagent_build_info",
    ];
    expect(stored).toEqual(expect.arrayContaining(documented));
    for (const counter of legacyCounters) expect(stored).not.toContain(`${counter}_total`);
    expect(stored).not.toContain("leakagent_rejected_total_total");

    // The metadata shows the format: OpenMetrics, where LeakSignal's un-suffixed counters are typed unknown.
    const metadata = await prometheus.api<Record<string, Array<{ type: string }>>>("/api/v1/metadata");
    for (const counter of legacyCounters) expect(metadata[counter]?.[0]?.type, counter).toBe("unknown");
    for (const histogram of histograms) expect(metadata[histogram]?.[0]?.type, histogram).toBe("histogram");
    expect(metadata.leakagent_policy_update_waiting?.[0]?.type).toBe("gauge");
  });

  describe("the LeakAgent dashboard users have", () => {
    it("Transactions and WASM Pulls", async () => {
      const transactions = await query(`sum(irate(leakagent_match_inbound[${RATE_INTERVAL}]))`);
      expect(transactions[0]?.value).toBeCloseTo(perSecond(SHOP_PER_BATCH + LEGACY_PER_BATCH), 4);
      const pulls = await query(`sum(irate(leakagent_proxy_pull[${RATE_INTERVAL}]))`);
      expect(pulls[0]?.value).toBeCloseTo(perSecond(1), 4);
    });

    it("Policy Dispatch and New Node Connections by Policy", async () => {
      const expected = { [policyIds.shop]: perSecond(1), [policyIds.legacy]: perSecond(1) };
      for (const metric of ["leakagent_policy_update_send", "leakagent_policy_update_init"]) {
        const result = byLabels(await query(`sum by (policy)(irate(${metric}[${RATE_INTERVAL}]))`), "policy");
        expect(Object.keys(result).sort(), metric).toEqual(Object.keys(expected).sort());
        for (const [policy, value] of Object.entries(expected)) expect(result[policy]).toBeCloseTo(value, 4);
      }
    });

    it("Currently Connected Nodes", async () => {
      const connected = byLabels(await query("sum by (deployment)(leakagent_policy_update_waiting)"), "deployment");
      expect(connected).toEqual({ shop: batches, legacy: batches });
    });

    it("Turned Away Node Connections by Policy", async () => {
      const result = await query(`sum by (policy)(irate(leakagent_policy_update_turnaway[${RATE_INTERVAL}]))`);
      expect(result).toHaveLength(1);
      expect(result[0]?.value).toBeCloseTo(perSecond(1), 4);
    });
  });

  describe("the LeakSignal dashboard users have (deployment = shop)", () => {
    it("HTTP Status Codes", async () => {
      const result = byLabels(
        await query(`sum by (status)(irate(leaksignal_status_code{deployment="shop"}[${RATE_INTERVAL}]))`),
        "status",
      );
      const expected: Record<string, number> = {};
      for (const r of SHOP_REPORTS) expected[r.status] = (expected[r.status] ?? 0) + r.count;
      expect(Object.keys(result).sort()).toEqual(Object.keys(expected).sort());
      for (const [status, count] of Object.entries(expected)) expect(result[status]).toBeCloseTo(perSecond(count), 4);
    });

    it("Request Timing, Response Timing and Leaksignal Timing (p50)", async () => {
      const request = byLabels(
        await query(
          `histogram_quantile(0.50, sum by (local_service, le)(rate(leaksignal_request_time_ms_bucket{deployment="shop"}[${RATE_INTERVAL}])))`,
        ),
        "local_service",
      );
      expect(request.checkout).toBeCloseTo(quantileOf(0.5, CHECKOUT.requestMs, TIME_BUCKETS_MS), 4);
      expect(request.cart).toBeCloseTo(quantileOf(0.5, CART.requestMs, TIME_BUCKETS_MS), 4);
      const response = byLabels(
        await query(
          `histogram_quantile(0.50, sum by (local_service, le)(rate(leaksignal_response_time_ms_bucket{deployment="shop"}[${RATE_INTERVAL}])))`,
        ),
        "local_service",
      );
      expect(response.checkout).toBeCloseTo(quantileOf(0.5, CHECKOUT.responseMs, TIME_BUCKETS_MS), 4);
      expect(response.cart).toBeCloseTo(quantileOf(0.5, CART.responseMs, TIME_BUCKETS_MS), 4);
      const matching = await query(
        `histogram_quantile(0.50, sum by (le)(rate(leaksignal_match_time_ms_bucket{deployment="shop"}[${RATE_INTERVAL}])))`,
      );
      expect(matching).toHaveLength(1);
      expect(matching[0]?.value).toBeCloseTo(quantileOf(0.5, SHOP_MATCH_TIME_MS, TIME_BUCKETS_MS), 4);
    });

    it("Request Size and Response Size", async () => {
      const request = byLabels(
        await query(
          `sum by (local_service, le)(irate(leaksignal_request_size_bytes_sum{deployment="shop"}[${RATE_INTERVAL}]))/sum by (local_service, le)(irate(leaksignal_request_size_bytes_count{deployment="shop"}[${RATE_INTERVAL}]))`,
        ),
        "local_service",
      );
      expect(request).toEqual({ checkout: CHECKOUT.requestBytes, cart: CART.requestBytes });
      const response = byLabels(
        await query(
          `sum by (local_service, le)(irate(leaksignal_response_size_bytes_sum{deployment="shop"}[${RATE_INTERVAL}]))/sum by (local_service, le)(irate(leaksignal_response_size_bytes_count{deployment="shop"}[${RATE_INTERVAL}]))`,
        ),
        "local_service",
      );
      expect(response).toEqual({ checkout: CHECKOUT.responseBytes, cart: CART.responseBytes });
    });

    it("the deployment variable", async () => {
      const values = await prometheus.api<string[]>("/api/v1/label/deployment/values", {
        "match[]": "leaksignal_request_time_ms_bucket",
      });
      expect(values).toEqual(["legacy", "shop"]);
    });
  });

  describe("the LeakSignal matches dashboard users have", () => {
    it("Matches per Request (service checkout, in_header false, in_response true, category email)", async () => {
      const result = await query(
        `histogram_quantile(0.5, sum by (local_service, policy_path, category, le)(irate(leaksignal_match_count_bucket{deployment="shop", local_service=~"checkout", in_header=~"false", in_response=~"true", category=~"email"}[${RATE_INTERVAL}])))`,
      );
      expect(result.map((s) => s.metric)).toEqual([
        { local_service: "checkout", policy_path: CHECKOUT.path, category: "email" },
      ]);
      expect(result[0]?.value).toBeCloseTo(quantileOf(0.5, EMAIL_MATCHES_IN_RESPONSE_BODY, MATCH_COUNT_BUCKETS), 4);
    });

    it("the service and category variables", async () => {
      const match = 'leaksignal_match_count_bucket{deployment="shop"}';
      const services = await prometheus.api<string[]>("/api/v1/label/local_service/values", { "match[]": match });
      expect(services).toEqual(["cart", "checkout"]);
      const categories = await prometheus.api<string[]>("/api/v1/label/category/values", { "match[]": match });
      expect(categories).toEqual(["access_token", "credit_card", "email", "phone_number"]);
    });
  });

  describe("the LeakSignal performance dashboard users have (service checkout|cart, all policy paths, p99)", () => {
    const filter = String.raw`deployment="shop",local_service=~"checkout|cart",policy_path=~"(shop\\.example\\.com/cart/checkout|shop\\.example\\.com/cart/items)",is_outbound="true"`;
    const outbound = SHOP_REPORTS.filter((r) => r.outbound);

    it("HTTP Status Codes", async () => {
      const result = byLabels(
        await query(
          `sum by (local_service, policy_path, status)(irate(leaksignal_status_code{${filter}}[${RATE_INTERVAL}]))`,
        ),
        "local_service",
        "policy_path",
        "status",
      );
      const expected = Object.fromEntries(outbound.map((r) => [`${r.service}|${r.path}|${r.status}`, r.count]));
      expect(Object.keys(result).sort()).toEqual(Object.keys(expected).sort());
      for (const [key, count] of Object.entries(expected)) expect(result[key]).toBeCloseTo(perSecond(count), 4);
    });

    it("HTTP Server Errors and HTTP Client Errors (totals)", async () => {
      const serverErrors = byLabels(
        await query(
          String.raw`sum by (local_service, status)(leaksignal_status_code{${filter},status=~"5\\d\\d"}) != 0`,
        ),
        "local_service",
        "status",
      );
      expect(serverErrors).toEqual({ "checkout|503": batches * 1 });
      const clientErrors = byLabels(
        await query(
          String.raw`sum by (local_service, status)(leaksignal_status_code{${filter},status=~"4\\d\\d"}) != 0`,
        ),
        "local_service",
        "status",
      );
      expect(clientErrors).toEqual({ "cart|404": batches * 2 });
    });

    it("Request Timing, Response Timing and Leaksignal Timing", async () => {
      const timing = async (metric: string) =>
        byLabels(
          await query(
            `histogram_quantile(0.99, sum by (local_service, policy_path, le)(rate(${metric}_bucket{${filter}}[${RATE_INTERVAL}])))`,
          ),
          "local_service",
        );
      const request = await timing("leaksignal_request_time_ms");
      expect(request.checkout).toBeCloseTo(quantileOf(0.99, CHECKOUT.requestMs, TIME_BUCKETS_MS), 4);
      expect(request.cart).toBeCloseTo(quantileOf(0.99, CART.requestMs, TIME_BUCKETS_MS), 4);
      const response = await timing("leaksignal_response_time_ms");
      expect(response.checkout).toBeCloseTo(quantileOf(0.99, CHECKOUT.responseMs, TIME_BUCKETS_MS), 4);
      expect(response.cart).toBeCloseTo(quantileOf(0.99, CART.responseMs, TIME_BUCKETS_MS), 4);
      const matching = await timing("leaksignal_match_time_ms");
      const expected = quantileOf(0.99, SHOP_MATCH_TIME_MS, TIME_BUCKETS_MS);
      expect(matching).toEqual({ checkout: expect.closeTo(expected, 6), cart: expect.closeTo(expected, 6) });
    });

    it("the service and policy_path variables", async () => {
      const services = await prometheus.api<string[]>("/api/v1/label/local_service/values", {
        "match[]": 'leaksignal_request_time_ms_bucket{deployment="shop"}',
      });
      expect(services).toEqual(["cart", "checkout"]);
      const paths = await prometheus.api<string[]>("/api/v1/label/policy_path/values", {
        "match[]":
          'leaksignal_request_time_ms_bucket{deployment="shop", local_service=~"checkout|cart",  is_outbound="true"}',
      });
      expect(paths).toEqual([CART.path, CHECKOUT.path].sort());
    });
  });

  describe("the dashboards in deploy/grafana", () => {
    const values = { deployment: ".*", service: ".*", __rate_interval: RATE_INTERVAL };

    it("every query parses and returns data", async () => {
      const failures: string[] = [];
      for (const dashboard of shippedDashboards()) {
        for (const { panel, expr } of queriesOf(dashboard)) {
          const sent = substitute(expr, values);
          try {
            const result = await query(sent);
            if (result.length === 0) failures.push(`${dashboard.file} "${panel}": no data for ${sent}`);
          } catch (error) {
            failures.push(`${dashboard.file} "${panel}": ${(error as Error).message}`);
          }
        }
      }
      expect(failures).toEqual([]);
    });

    it("every variable query names labels the agent's series carry", async () => {
      for (const dashboard of shippedDashboards()) {
        for (const variable of dashboard.json.templating.list.filter((v) => v.type === "query")) {
          const match = /^label_values\((.+), (\w+)\)$/.exec(variable.definition ?? "");
          expect(match, `${dashboard.file} ${variable.name}`).not.toBeNull();
          const [, selector, label] = match as RegExpExecArray;
          const found = await prometheus.api<string[]>(`/api/v1/label/${label}/values`, {
            "match[]": substitute(selector as string, values),
          });
          expect(found.length, `${dashboard.file} ${variable.name}`).toBeGreaterThan(0);
        }
      }
    });

    it("shows connected proxies, matches by category and status codes with the values sent", async () => {
      const [health, telemetry] = ["leakagent-health.json", "leaksignal-telemetry.json"].map((file) => {
        const dashboard = shippedDashboards().find((d) => d.file === file);
        if (!dashboard) throw new Error(`${file} missing`);
        return queriesOf(dashboard);
      });
      const panel = (queries: typeof health, title: string) => {
        const found = queries?.find((q) => q.panel === title);
        if (!found) throw new Error(`no panel "${title}"`);
        return query(substitute(found.expr, values));
      };
      expect(byLabels(await panel(health, "Connected proxies by deployment"), "deployment")).toEqual({
        shop: batches,
        legacy: batches,
      });
      const shopOnly = { ...values, deployment: "shop" };
      const categories = byLabels(
        await query(substitute(telemetry?.find((q) => q.panel === "Matches by category")?.expr ?? "", shopOnly)),
        "category",
      );
      expect(Object.keys(categories).sort()).toEqual(["access_token", "credit_card", "email", "phone_number"]);
      // rate() scales every series alike, so the ratio between categories is the ratio of matches sent.
      expect((categories.email ?? 0) / (categories.phone_number ?? 1)).toBeCloseTo(2, 4);
      const statuses = byLabels(
        await query(substitute(telemetry?.find((q) => q.panel === "Status codes")?.expr ?? "", shopOnly)),
        "status",
      );
      expect(Object.keys(statuses).sort()).toEqual(["200", "404", "503"]);
      expect((statuses["200"] ?? 0) / (statuses["503"] ?? 1)).toBeCloseTo(4, 4);
    });
  });
});
