import type { TransactionObservation } from "../../src/domain/telemetry/transaction";
import type { RejectionReason, TelemetrySettings, TelemetrySink } from "../../src/ports/telemetry-sink.port";

/** A TelemetrySink that remembers every call, for tests. */
export class RecordingTelemetry implements TelemetrySink {
  readonly transactions: TransactionObservation[] = [];
  readonly opened: Array<{ deployment: string; ip: string; policyId: string }> = [];
  readonly waiting = new Map<string, number>();
  readonly sent: Array<{ deployment: string; policyId: string }> = [];
  readonly turnedAway: Array<{ deployment: string; ip: string }> = [];
  readonly pulled: string[] = [];
  readonly rejected: RejectionReason[] = [];
  readonly reloads: boolean[] = [];
  readonly settings: TelemetrySettings[] = [];

  configure(settings: TelemetrySettings): void {
    this.settings.push(settings);
  }

  transactionObserved(observation: TransactionObservation): void {
    this.transactions.push(observation);
  }
  policyStreamOpened(deployment: string, ip: string, policyId: string): void {
    this.opened.push({ deployment, ip, policyId });
  }
  policyStreamsWaiting(deployment: string, count: number): void {
    this.waiting.set(deployment, count);
  }
  policySent(deployment: string, policyId: string): void {
    this.sent.push({ deployment, policyId });
  }
  proxyTurnedAway(deployment: string, ip: string): void {
    this.turnedAway.push({ deployment, ip });
  }
  proxyPulled(key: string): void {
    this.pulled.push(key);
  }
  requestRejected(reason: RejectionReason): void {
    this.rejected.push(reason);
  }
  configReloaded(success: boolean): void {
    this.reloads.push(success);
  }
}
