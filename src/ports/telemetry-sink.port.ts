import type { TransactionObservation } from "../domain/telemetry/transaction";

/** Why the agent refused a request; a small fixed set, used as a metric label. */
export type RejectionReason =
  | "unknown_deployment"
  | "malformed"
  | "message_too_large"
  | "unimplemented"
  | "deadline_exceeded";

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
