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

/** Where everything the agent observes goes; the Prometheus adapter is the real one. */
export interface TelemetrySink {
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
