import { Counter, collectDefaultMetrics, Gauge, type Registry } from "prom-client";
import type { CategoryMatchCount, TransactionObservation } from "../../domain/telemetry/transaction";
import {
  DEFAULT_TELEMETRY_SETTINGS,
  type RejectionReason,
  type TelemetrySettings,
  type TelemetrySink,
} from "../../ports/telemetry-sink.port";
import {
  CounterFamily,
  CounterSeries,
  extendLabelSet,
  HistogramFamily,
  HistogramSeries,
  type LabelSet,
  labelSet,
} from "./families";
import { LabelRewrite, SeriesTable, type Timed } from "./series-table";

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
const TURNAWAY_LABELS = ["deployment", "ip"] as const;
const INIT_LABELS = ["deployment", "ip", "policy"] as const;
const SEND_LABELS = ["deployment", "policy"] as const;
const MATCH_COUNT_LABELS = ["in_response", "in_header", "category"] as const;

type Child = Counter.Internal;

/** The families whose series are one per transaction label combination, in TransactionSeries. */
const TRANSACTION_FAMILIES = [
  "leaksignal_match_time_ms",
  "leaksignal_request_time_ms",
  "leaksignal_response_time_ms",
  "leaksignal_request_size_bytes",
  "leaksignal_response_size_bytes",
] as const;
const STATUS_FAMILY = "leaksignal_status_code";
const MATCH_COUNT_FAMILY = "leaksignal_match_count";

/** The sweep runs every tenth of the TTL, at most once a second and at least once a minute. */
export function sweepIntervalMs(ttlMs: number): number {
  return Math.min(60_000, Math.max(1_000, Math.round(ttlMs / 10)));
}

/**
 * Every series of one transaction label combination, found with one table lookup and updated as plain
 * numbers. Its five histograms live and expire together; its status and match count series, which carry
 * more labels, each on their own.
 */
interface TransactionSeries {
  readonly labels: LabelSet;
  touched: number;
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
  private readonly waiting: Gauge<string>;
  private readonly rejected: Counter<string>;
  private readonly configReloads: Counter<string>;
  private readonly configLastReloadSuccessful: Gauge<string>;
  private readonly configLastReloadSuccess: Gauge<string>;

  private readonly seriesDropped: Counter<string>;

  /** Every transaction label combination, in creation order (the exposition's). */
  private readonly transactions = new SeriesTable<TransactionSeries>();
  /** Status and match count series, held by their TransactionSeries, counted here against the cap. */
  private statusSeries = 0;
  private matchCountSeries = 0;
  // LeakSignal's policy stream counters: their `ip` and `policy` labels grow with proxy restarts and policy edits.
  private readonly turnaway = new SeriesTable<CounterSeries>();
  private readonly updateInit = new SeriesTable<CounterSeries>();
  private readonly updateSend = new SeriesTable<CounterSeries>();

  private settings = DEFAULT_TELEMETRY_SETTINGS;
  private ipLabel = new LabelRewrite("raw", undefined);
  private tokenLabel = new LabelRewrite("raw", undefined);
  private sweeper: NodeJS.Timeout | undefined;

  private readonly inboundByDeployment = new Map<string, CounterSeries>();
  private readonly waitingByDeployment = new Map<string, Gauge.Internal<string>>();
  private readonly rejectedByReason = new Map<RejectionReason, Child>();
  private readonly droppedByFamily = new Map<string, Child>();

  /** `version` labels leakagent_build_info; `clock` (ms since the epoch) times series for the TTL. */
  constructor(
    registry: Registry,
    version: string,
    private readonly clock: () => number = Date.now,
  ) {
    const registers = [registry];
    // LeakSignal's own counters carry no _total suffix; dashboards query these exact names.
    const legacyCounter = (name: string, help: string, labelNames: readonly string[]) =>
      new Counter({ name, help, labelNames, registers });
    // The families every report updates are the agent's own (families.ts); the rest stay prom-client's.
    const series = this.transactions;
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
    const table = (name: string, help: string, labelNames: readonly string[], rows: SeriesTable<CounterSeries>) =>
      new CounterFamily({ name, help, labelNames }, () => rows.values()).register(registry);
    table(
      "leakagent_policy_update_turnaway",
      "Policy streams refused for an unknown deployment or api key.",
      TURNAWAY_LABELS,
      this.turnaway,
    );
    table("leakagent_policy_update_init", "Policy streams opened.", INIT_LABELS, this.updateInit);
    table("leakagent_policy_update_send", "Policies sent to proxies.", SEND_LABELS, this.updateSend);
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
    this.seriesDropped = new Counter({
      name: "leakagent_series_dropped_total",
      help: "Updates dropped because they needed a new series of a metric already at its series cap.",
      labelNames: ["metric"],
      registers,
    });
    const liveSeries = (): Array<[string, number]> => [
      ...TRANSACTION_FAMILIES.map((name): [string, number] => [name, this.transactions.size]),
      [STATUS_FAMILY, this.statusSeries],
      [MATCH_COUNT_FAMILY, this.matchCountSeries],
      ["leakagent_policy_update_turnaway", this.turnaway.size],
      ["leakagent_policy_update_init", this.updateInit.size],
      ["leakagent_policy_update_send", this.updateSend.size],
    ];
    new Gauge({
      name: "leakagent_live_series",
      help: "Label sets a capped metric holds; new ones past metrics.max_series_per_metric are dropped.",
      labelNames: ["metric"],
      registers,
      collect() {
        for (const [metric, count] of liveSeries()) this.set({ metric }, count);
      },
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

  /**
   * New bounds apply from now on. A changed label mode or hash key empties the metrics its labels are in,
   * so no series keeps a value exposed the old way (raw tokens after a switch to `hash`, say); a lower cap
   * keeps the series already there and lets the TTL bring them under it.
   */
  configure(settings: TelemetrySettings): void {
    const ipLabel = new LabelRewrite(settings.ipLabel, settings.labelHashKey);
    const tokenLabel = new LabelRewrite(settings.tokenLabel, settings.labelHashKey);
    const ipChanged = !ipLabel.sameAs(this.ipLabel);
    if (ipChanged || !tokenLabel.sameAs(this.tokenLabel)) {
      this.transactions.clear();
      this.statusSeries = 0;
      this.matchCountSeries = 0;
    }
    if (ipChanged) {
      this.turnaway.clear();
      this.updateInit.clear();
    }
    this.ipLabel = ipLabel;
    this.tokenLabel = tokenLabel;
    if (settings.seriesTtlMs !== this.settings.seriesTtlMs || !this.sweeper) {
      clearInterval(this.sweeper);
      this.sweeper = undefined;
      if (settings.seriesTtlMs > 0) {
        this.sweeper = setInterval(() => this.sweep(this.clock()), sweepIntervalMs(settings.seriesTtlMs));
        // Never what keeps the process alive.
        this.sweeper.unref();
      }
    }
    this.settings = settings;
  }

  /** Removes every series not updated within the TTL before `now`; run by the sweep timer. */
  sweep(now: number): void {
    if (this.settings.seriesTtlMs <= 0) return;
    const cutoff = now - this.settings.seriesTtlMs;
    for (const series of this.transactions.values()) {
      if (series.touched < cutoff) {
        this.transactions.delete(series);
        this.statusSeries -= series.status.size;
        this.matchCountSeries -= matchCountMaps(series).reduce((sum, byCategory) => sum + byCategory.size, 0);
        continue;
      }
      this.statusSeries -= deleteStale(series.status, cutoff);
      for (const byCategory of matchCountMaps(series)) this.matchCountSeries -= deleteStale(byCategory, cutoff);
    }
    for (const table of [this.turnaway, this.updateInit, this.updateSend]) {
      for (const series of table.values()) if (series.touched < cutoff) table.delete(series);
    }
  }

  transactionObserved(observation: TransactionObservation): void {
    const { labels } = observation;
    let inbound = this.inboundByDeployment.get(labels.deployment);
    if (inbound === undefined) {
      inbound = new CounterSeries(labelSet(["deployment"], [labels.deployment]));
      this.inboundByDeployment.set(labels.deployment, inbound);
    }
    inbound.value++;

    const now = this.clock();
    const values = [
      labels.deployment,
      labels.policyPath,
      labels.localService,
      labels.peerService,
      labels.isOutbound,
      this.ipLabel.apply(labels.ip),
      this.tokenLabel.apply(labels.token),
    ];
    let series = this.transactions.get(values);
    if (series === undefined) {
      if (this.transactions.size >= this.settings.maxSeriesPerMetric) {
        this.dropTransaction(observation);
        return;
      }
      series = createSeries(values);
      this.transactions.add(series);
    }
    series.touched = now;

    if (observation.status !== undefined) {
      let status = series.status.get(observation.status);
      if (status === undefined && this.statusSeries < this.settings.maxSeriesPerMetric) {
        status = new CounterSeries(extendLabelSet(series.labels, STATUS_LABELS, [observation.status]));
        series.status.set(observation.status, status);
        this.statusSeries++;
      }
      if (status === undefined) this.dropped(STATUS_FAMILY);
      else {
        status.value++;
        status.touched = now;
      }
    }
    if (observation.matchTimeMs !== undefined) series.matchTime.observe(observation.matchTimeMs);
    if (observation.requestTimeMs !== undefined) series.requestTime.observe(observation.requestTimeMs);
    if (observation.responseTimeMs !== undefined) series.responseTime.observe(observation.responseTimeMs);
    series.requestSize.observe(observation.requestSizeBytes);
    series.responseSize.observe(observation.responseSizeBytes);
    for (const match of observation.matchCounts) {
      const counts = this.matchCounts(series, match);
      if (counts === undefined) this.dropped(MATCH_COUNT_FAMILY);
      else {
        counts.observe(match.count);
        counts.touched = now;
      }
    }
  }

  policyStreamOpened(deployment: string, ip: string, policyId: string): void {
    this.count(this.updateInit, "leakagent_policy_update_init", INIT_LABELS, [
      deployment,
      this.ipLabel.apply(ip),
      policyId,
    ]);
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
    this.count(this.updateSend, "leakagent_policy_update_send", SEND_LABELS, [deployment, policyId]);
  }

  proxyTurnedAway(deployment: string, ip: string): void {
    this.count(this.turnaway, "leakagent_policy_update_turnaway", TURNAWAY_LABELS, [
      deployment,
      this.ipLabel.apply(ip),
    ]);
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

  /** A report whose label combination found no room: everything it would have updated is counted as dropped. */
  private dropTransaction(observation: TransactionObservation): void {
    const observed = [
      observation.matchTimeMs,
      observation.requestTimeMs,
      observation.responseTimeMs,
      observation.requestSizeBytes,
      observation.responseSizeBytes,
    ];
    TRANSACTION_FAMILIES.forEach((family, i) => {
      if (observed[i] !== undefined) this.dropped(family);
    });
    if (observation.status !== undefined) this.dropped(STATUS_FAMILY);
    for (let i = 0; i < observation.matchCounts.length; i++) this.dropped(MATCH_COUNT_FAMILY);
  }

  private dropped(family: string): void {
    let dropped = this.droppedByFamily.get(family);
    if (dropped === undefined) {
      dropped = this.seriesDropped.labels(family);
      this.droppedByFamily.set(family, dropped);
    }
    dropped.inc();
  }

  /** The match count series of one category and context, made on first use if the cap allows. */
  private matchCounts(series: TransactionSeries, match: CategoryMatchCount): HistogramSeries | undefined {
    const byCategory = match.inResponse
      ? match.inHeader
        ? series.responseHeaderMatches
        : series.responseBodyMatches
      : match.inHeader
        ? series.requestHeaderMatches
        : series.requestBodyMatches;
    let counts = byCategory.get(match.category);
    if (counts === undefined && this.matchCountSeries < this.settings.maxSeriesPerMetric) {
      const context = [match.inResponse ? "true" : "false", match.inHeader ? "true" : "false", match.category];
      counts = new HistogramSeries(extendLabelSet(series.labels, MATCH_COUNT_LABELS, context), MATCH_COUNT_BUCKETS);
      byCategory.set(match.category, counts);
      this.matchCountSeries++;
    }
    return counts;
  }

  /** One more on a table counter, made on first use if the cap allows. */
  private count(table: SeriesTable<CounterSeries>, family: string, names: readonly string[], values: string[]): void {
    let series = table.get(values);
    if (series === undefined) {
      if (table.size >= this.settings.maxSeriesPerMetric) {
        this.dropped(family);
        return;
      }
      series = new CounterSeries(labelSet(names, values));
      table.add(series);
    }
    series.value++;
    series.touched = this.clock();
  }

  configReloaded(success: boolean): void {
    this.configReloads.labels(success ? "success" : "failure").inc();
    this.configLastReloadSuccessful.set(success ? 1 : 0);
    if (success) this.configLastReloadSuccess.set(Date.now() / 1000);
  }
}

/** The transaction label values, in TRANSACTION_LABELS order. */
function createSeries(values: readonly string[]): TransactionSeries {
  const set = labelSet(TRANSACTION_LABELS, values);
  return {
    labels: set,
    touched: 0,
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

function matchCountMaps(series: TransactionSeries): Array<Map<string, HistogramSeries & Timed>> {
  return [
    series.requestBodyMatches,
    series.requestHeaderMatches,
    series.responseBodyMatches,
    series.responseHeaderMatches,
  ];
}

/** Deletes the series not updated since `cutoff`; returns how many. */
function deleteStale(byKey: Map<string, Timed>, cutoff: number): number {
  let deleted = 0;
  for (const [key, series] of byKey) {
    if (series.touched < cutoff) {
      byKey.delete(key);
      deleted++;
    }
  }
  return deleted;
}
