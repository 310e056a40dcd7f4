import { Counter, collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import type { CategoryMatchCount, TransactionLabels, TransactionObservation } from "../../domain/telemetry/transaction";
import type { RejectionReason, TelemetrySink } from "../../ports/telemetry-sink.port";
import {
  CounterFamily,
  CounterSeries,
  extendLabelSet,
  HistogramFamily,
  HistogramSeries,
  type LabelSet,
  labelSet,
} from "./families";

/** Milliseconds, 0.1 ms .. 60 s: matchers take well under a millisecond, slow uploads take seconds. */
export const TIME_BUCKETS_MS = [
  0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10_000, 30_000, 60_000,
] as const;

/** Bytes, 0 .. 64 MiB in powers of four; `le="0"` counts the bodiless transactions. */
export const SIZE_BUCKETS_BYTES = [
  0, 64, 256, 1024, 4096, 16_384, 65_536, 262_144, 1_048_576, 4_194_304, 16_777_216, 67_108_864,
] as const;

/** Matches of one category in one context of one transaction, 1 .. 1000. */
export const MATCH_COUNT_BUCKETS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000] as const;

/** The labels of every leaksignal_* metric, in the documented order. */
const TRANSACTION_LABELS = [
  "deployment",
  "policy_path",
  "local_service",
  "peer_service",
  "is_outbound",
  "ip",
  "token",
] as const;

const STATUS_LABELS = ["status"] as const;
const MATCH_COUNT_LABELS = ["in_response", "in_header", "category"] as const;

type Child = Counter.Internal;

/**
 * Every series of one transaction label combination: the hot path finds them with one map lookup and
 * updates plain numbers. Dropping the combination (a future series TTL) is deleting it from the map.
 */
interface TransactionSeries {
  readonly labels: LabelSet;
  readonly matchTime: HistogramSeries;
  readonly requestTime: HistogramSeries;
  readonly responseTime: HistogramSeries;
  readonly requestSize: HistogramSeries;
  readonly responseSize: HistogramSeries;
  readonly status: Map<string, CounterSeries>;
  /** leaksignal_match_count by category, one map per context. */
  readonly requestBodyMatches: Map<string, HistogramSeries>;
  readonly requestHeaderMatches: Map<string, HistogramSeries>;
  readonly responseBodyMatches: Map<string, HistogramSeries>;
  readonly responseHeaderMatches: Map<string, HistogramSeries>;
}

/**
 * The TelemetrySink that exposes everything as Prometheus metrics on the given registry, under the
 * names and labels of LeakSignal's Metrics.md so existing dashboards keep working.
 */
export class PrometheusTelemetry implements TelemetrySink {
  private readonly proxyPull: Counter<string>;
  private readonly turnaway: Counter<string>;
  private readonly updateInit: Counter<string>;
  private readonly updateSend: Counter<string>;
  private readonly waiting: Gauge<string>;
  private readonly rejected: Counter<string>;
  private readonly configReloads: Counter<string>;
  private readonly configLastReloadSuccessful: Gauge<string>;
  private readonly configLastReloadSuccess: Gauge<string>;

  /** Every transaction label combination, in creation order (the exposition's). */
  private readonly series = new Set<TransactionSeries>();
  /**
   * The same, found one label at a time (deployment, policy path, local and peer service, direction,
   * ip, token), so a report needs no key string built. Dropping a combination (a future series TTL)
   * is deleting it from the set and from its last level.
   */
  private readonly byLabels: LabelLevel = new Map();
  private readonly inboundByDeployment = new Map<string, CounterSeries>();
  private readonly waitingByDeployment = new Map<string, Gauge.Internal<string>>();
  private readonly rejectedByReason = new Map<RejectionReason, Child>();

  /** `version` labels leakagent_build_info. */
  constructor(registry: Registry, version: string) {
    const registers = [registry];
    // LeakSignal's own counters carry no _total suffix; dashboards query these exact names.
    const legacyCounter = (name: string, help: string, labelNames: readonly string[]) =>
      new Counter({ name, help, labelNames, registers });
    // The families every report updates are the agent's own (families.ts); the rest stay prom-client's.
    const series = this.series;
    // A histogram series exists once observed, as in prom-client.
    const histogram = (
      name: string,
      help: string,
      bounds: readonly number[],
      pick: (s: TransactionSeries) => HistogramSeries,
    ) =>
      new HistogramFamily({ name, help, labelNames: TRANSACTION_LABELS }, bounds, function* () {
        for (const transaction of series.values()) {
          const observed = pick(transaction);
          if (observed.count > 0) yield observed;
        }
      }).register(registry);

    new CounterFamily(
      { name: "leakagent_match_inbound", help: "Transaction reports received.", labelNames: ["deployment"] },
      () => this.inboundByDeployment.values(),
    ).register(registry);
    this.proxyPull = legacyCounter("leakagent_proxy_pull", "Proxy module downloads served.", ["key"]);
    this.turnaway = legacyCounter(
      "leakagent_policy_update_turnaway",
      "Policy streams refused for an unknown deployment or api key.",
      ["deployment", "ip"],
    );
    this.updateInit = legacyCounter("leakagent_policy_update_init", "Policy streams opened.", [
      "deployment",
      "ip",
      "policy",
    ]);
    this.updateSend = legacyCounter("leakagent_policy_update_send", "Policies sent to proxies.", [
      "deployment",
      "policy",
    ]);
    this.waiting = new Gauge({
      name: "leakagent_policy_update_waiting",
      help: "Open policy streams, i.e. connected proxies.",
      labelNames: ["deployment"],
      registers,
    });
    this.rejected = new Counter({
      name: "leakagent_rejected_total",
      help: "Requests the agent refused, by reason.",
      labelNames: ["reason"],
      registers,
    });
    this.configReloads = new Counter({
      name: "leakagent_config_reload_total",
      help: "Configuration load attempts, by result (success or failure).",
      labelNames: ["result"],
      registers,
    });
    this.configLastReloadSuccessful = new Gauge({
      name: "leakagent_config_last_reload_successful",
      help: "1 if the last configuration load attempt succeeded, 0 if the agent runs on an older configuration.",
      registers,
    });
    this.configLastReloadSuccess = new Gauge({
      name: "leakagent_config_last_reload_success_timestamp_seconds",
      help: "Unix time of the last successful configuration load.",
      registers,
    });
    new Gauge({
      name: "leakagent_build_info",
      help: "Always 1; labelled with the agent and Node.js versions.",
      labelNames: ["version", "node_version"],
      registers,
    }).set({ version, node_version: process.versions.node }, 1);
    collectDefaultMetrics({ register: registry });
    // prom-client's gauges named like counters (promtool flags them); nodejs_active_handles etc. by type remain.
    for (const name of [
      "nodejs_active_handles_total",
      "nodejs_active_requests_total",
      "nodejs_active_resources_total",
    ]) {
      registry.removeSingleMetric(name);
    }

    new CounterFamily(
      {
        name: "leaksignal_status_code",
        help: "Responses by HTTP status code.",
        labelNames: [...TRANSACTION_LABELS, ...STATUS_LABELS],
      },
      function* () {
        for (const transaction of series.values()) yield* transaction.status.values();
      },
    ).register(registry);
    histogram("leaksignal_match_time_ms", "Time spent in all matchers, in ms.", TIME_BUCKETS_MS, (s) => s.matchTime);
    histogram(
      "leaksignal_request_time_ms",
      "First request header to end of request body, in ms.",
      TIME_BUCKETS_MS,
      (s) => s.requestTime,
    );
    histogram(
      "leaksignal_response_time_ms",
      "End of request body to end of response body, in ms.",
      TIME_BUCKETS_MS,
      (s) => s.responseTime,
    );
    histogram("leaksignal_request_size_bytes", "Request body size in bytes.", SIZE_BUCKETS_BYTES, (s) => s.requestSize);
    histogram(
      "leaksignal_response_size_bytes",
      "Response body size in bytes.",
      SIZE_BUCKETS_BYTES,
      (s) => s.responseSize,
    );
    new HistogramFamily(
      {
        name: "leaksignal_match_count",
        help: "Matches of one category in one context of a transaction.",
        labelNames: [...TRANSACTION_LABELS, ...MATCH_COUNT_LABELS],
      },
      MATCH_COUNT_BUCKETS,
      function* () {
        for (const transaction of series.values()) {
          yield* transaction.requestBodyMatches.values();
          yield* transaction.requestHeaderMatches.values();
          yield* transaction.responseBodyMatches.values();
          yield* transaction.responseHeaderMatches.values();
        }
      },
    ).register(registry);
  }

  transactionObserved(observation: TransactionObservation): void {
    const { labels } = observation;
    let inbound = this.inboundByDeployment.get(labels.deployment);
    if (inbound === undefined) {
      inbound = new CounterSeries(labelSet(["deployment"], [labels.deployment]));
      this.inboundByDeployment.set(labels.deployment, inbound);
    }
    inbound.value++;

    let below = level(this.byLabels, labels.deployment);
    below = level(below, labels.policyPath);
    below = level(below, labels.localService);
    below = level(below, labels.peerService);
    below = level(below, labels.isOutbound);
    below = level(below, labels.ip);
    let series = below.get(labels.token) as TransactionSeries | undefined;
    if (series === undefined) {
      series = createSeries(labels);
      below.set(labels.token, series);
      this.series.add(series);
    }

    if (observation.status !== undefined) {
      let status = series.status.get(observation.status);
      if (status === undefined) {
        status = new CounterSeries(extendLabelSet(series.labels, STATUS_LABELS, [observation.status]));
        series.status.set(observation.status, status);
      }
      status.value++;
    }
    if (observation.matchTimeMs !== undefined) series.matchTime.observe(observation.matchTimeMs);
    if (observation.requestTimeMs !== undefined) series.requestTime.observe(observation.requestTimeMs);
    if (observation.responseTimeMs !== undefined) series.responseTime.observe(observation.responseTimeMs);
    series.requestSize.observe(observation.requestSizeBytes);
    series.responseSize.observe(observation.responseSizeBytes);
    for (const match of observation.matchCounts) matchCountSeries(series, match).observe(match.count);
  }

  policyStreamOpened(deployment: string, ip: string, policyId: string): void {
    this.updateInit.labels(deployment, ip, policyId).inc();
  }

  policyStreamsWaiting(deployment: string, count: number): void {
    let waiting = this.waitingByDeployment.get(deployment);
    if (waiting === undefined) {
      waiting = this.waiting.labels(deployment);
      this.waitingByDeployment.set(deployment, waiting);
    }
    waiting.set(count);
  }

  policySent(deployment: string, policyId: string): void {
    this.updateSend.labels(deployment, policyId).inc();
  }

  proxyTurnedAway(deployment: string, ip: string): void {
    this.turnaway.labels(deployment, ip).inc();
  }

  proxyPulled(key: string): void {
    this.proxyPull.labels(key).inc();
  }

  requestRejected(reason: RejectionReason): void {
    let rejected = this.rejectedByReason.get(reason);
    if (rejected === undefined) {
      rejected = this.rejected.labels(reason);
      this.rejectedByReason.set(reason, rejected);
    }
    rejected.inc();
  }

  configReloaded(success: boolean): void {
    this.configReloads.labels(success ? "success" : "failure").inc();
    this.configLastReloadSuccessful.set(success ? 1 : 0);
    if (success) this.configLastReloadSuccess.set(Date.now() / 1000);
  }
}

type LabelLevel = Map<string, LabelLevel | TransactionSeries>;

/** The next level down for a label value, made on first use. */
function level(parent: LabelLevel, value: string): LabelLevel {
  let child = parent.get(value) as LabelLevel | undefined;
  if (child === undefined) {
    child = new Map();
    parent.set(value, child);
  }
  return child;
}

function createSeries(labels: TransactionLabels): TransactionSeries {
  const set = labelSet(TRANSACTION_LABELS, [
    labels.deployment,
    labels.policyPath,
    labels.localService,
    labels.peerService,
    labels.isOutbound,
    labels.ip,
    labels.token,
  ]);
  return {
    labels: set,
    matchTime: new HistogramSeries(set, TIME_BUCKETS_MS),
    requestTime: new HistogramSeries(set, TIME_BUCKETS_MS),
    responseTime: new HistogramSeries(set, TIME_BUCKETS_MS),
    requestSize: new HistogramSeries(set, SIZE_BUCKETS_BYTES),
    responseSize: new HistogramSeries(set, SIZE_BUCKETS_BYTES),
    status: new Map(),
    requestBodyMatches: new Map(),
    requestHeaderMatches: new Map(),
    responseBodyMatches: new Map(),
    responseHeaderMatches: new Map(),
  };
}

function matchCountSeries(series: TransactionSeries, match: CategoryMatchCount): HistogramSeries {
  const byCategory = match.inResponse
    ? match.inHeader
      ? series.responseHeaderMatches
      : series.responseBodyMatches
    : match.inHeader
      ? series.requestHeaderMatches
      : series.requestBodyMatches;
  let counts = byCategory.get(match.category);
  if (counts === undefined) {
    const context = [match.inResponse ? "true" : "false", match.inHeader ? "true" : "false", match.category];
    counts = new HistogramSeries(extendLabelSet(series.labels, MATCH_COUNT_LABELS, context), MATCH_COUNT_BUCKETS);
    byCategory.set(match.category, counts);
  }
  return counts;
}
