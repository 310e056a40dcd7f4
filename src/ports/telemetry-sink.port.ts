import type { TransactionObservation } from "../domain/telemetry/transaction";

/**
 * Why the agent refused a request or dropped a connection or stream; a small fixed set, used as a metric
 * label. The limits and faults behind the later ones are described in docs/operations.md.
 */
export type RejectionReason =
  | "unknown_deployment"
  | "malformed"
  | "message_too_large"
  | "unimplemented"
  | "deadline_exceeded"
  | "policy_stream_limit"
  | "too_many_streams"
  | "session_memory"
  | "request_timeout"
  | "slow_reader"
  | "keepalive_timeout"
  | "client_certificate";

/** How a label that can identify clients is exposed: as sent, as a short keyed hash, or empty. */
export type LabelMode = "raw" | "hash" | "drop";

/** The bounds on what the telemetry keeps: the config file's `metrics` section. */
export interface TelemetrySettings {
  /** Label sets one metric may hold; updates that need a new one past it are dropped and counted. */
  readonly maxSeriesPerMetric: number;
  /** Series not updated for this long are removed; 0 keeps them for the agent's lifetime. */
  readonly seriesTtlMs: number;
  readonly ipLabel: LabelMode;
  readonly tokenLabel: LabelMode;
  /** The key of `hash` mode; set whenever a label is hashed. */
  readonly labelHashKey: string | undefined;
}

export const DEFAULT_TELEMETRY_SETTINGS: TelemetrySettings = {
  maxSeriesPerMetric: 10_000,
  seriesTtlMs: 10 * 60_000,
  ipLabel: "raw",
  tokenLabel: "raw",
  labelHashKey: undefined,
};

/** Where everything the agent observes goes; the Prometheus adapter is the real one. */
export interface TelemetrySink {
  /** Applies new bounds, at start-up and on every config reload. */
  configure(settings: TelemetrySettings): void;
  /** One MatchData report from a known deployment. */
  transactionObserved(observation: TransactionObservation): void;
  policyStreamOpened(deployment: string, ip: string, policyId: string): void;
  /** The number of live policy streams of a deployment, after any change. */
  policyStreamsWaiting(deployment: string, count: number): void;
  policySent(deployment: string, policyId: string): void;
  proxyTurnedAway(deployment: string, ip: string): void;
  proxyPulled(key: string): void;
  requestRejected(reason: RejectionReason): void;
  /** A configuration load or reload attempt (the first load included). */
  configReloaded(success: boolean): void;
}

export const TelemetrySink = Symbol.for("leakagent.TelemetrySink");
