import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import { claimedDeployment, type Deployment, type ProxyCredentials } from "../policy/deployment";
import { type DeploymentChanges, DeploymentSet } from "../policy/deployment-set";

/** Why the agent ends a policy stream. */
export type PolicyStreamEnd = "deployment_removed" | "shutdown";

/** The agent's side of one proxy's open UpdatePolicy stream. */
export interface PolicyStream {
  send(deployment: Deployment): void;
  /** End the stream from the agent's side. The registry has already forgotten it. */
  end(reason: PolicyStreamEnd): void;
}

export class UnknownDeploymentError extends Error {
  readonly code = "unknown_deployment";
  constructor(readonly deployment: string) {
    super(deployment ? `unknown deployment or api key "${deployment}"` : "no api_key or deployment_name given");
  }
}

/**
 * The deployments the agent serves and the proxies connected to them.
 * Every live policy stream is held here, so the waiting count is exact however a stream ends.
 */
export class ProxyRegistry {
  private deployments = new DeploymentSet([]);
  private readonly streams = new Map<string, Set<PolicyStream>>();

  constructor(private readonly telemetry: TelemetrySink) {}

  get current(): DeploymentSet {
    return this.deployments;
  }

  /** The deployment a proxy's credentials name, if the agent serves it. */
  resolve(credentials: ProxyCredentials): Deployment | undefined {
    return this.deployments.get(claimedDeployment(credentials));
  }

  /**
   * Registers a proxy's policy stream and sends it the current policy.
   * Returns the function that unregisters it (safe to call more than once).
   */
  connect(credentials: ProxyCredentials, ip: string, stream: PolicyStream): () => void {
    const name = claimedDeployment(credentials);
    const deployment = this.deployments.get(name);
    if (!deployment) {
      this.telemetry.proxyTurnedAway(name, ip);
      throw new UnknownDeploymentError(name);
    }
    let live = this.streams.get(name);
    if (!live) {
      live = new Set();
      this.streams.set(name, live);
    }
    live.add(stream);
    this.telemetry.policyStreamOpened(name, ip, deployment.policyId);
    this.telemetry.policyStreamsWaiting(name, live.size);
    this.send(stream, deployment);
    return () => this.disconnect(name, stream);
  }

  /**
   * Swaps in a new set of deployments: streams of changed deployments get the new policy,
   * streams of removed ones are ended, unchanged ones get nothing.
   */
  replaceDeployments(next: DeploymentSet): DeploymentChanges {
    const changes = this.deployments.changesTo(next);
    this.deployments = next;
    for (const deployment of changes.changed) {
      for (const stream of this.streams.get(deployment.name) ?? []) this.send(stream, deployment);
    }
    for (const deployment of changes.removed) this.endAll(deployment.name, "deployment_removed");
    return changes;
  }

  /** Ends every live stream (on shutdown). */
  disconnectAll(reason: PolicyStreamEnd): void {
    for (const name of [...this.streams.keys()]) this.endAll(name, reason);
  }

  waiting(deployment: string): number {
    return this.streams.get(deployment)?.size ?? 0;
  }

  private send(stream: PolicyStream, deployment: Deployment): void {
    stream.send(deployment);
    this.telemetry.policySent(deployment.name, deployment.policyId);
  }

  private endAll(name: string, reason: PolicyStreamEnd): void {
    const live = this.streams.get(name);
    if (!live) return;
    this.streams.delete(name);
    this.telemetry.policyStreamsWaiting(name, 0);
    for (const stream of live) stream.end(reason);
  }

  private disconnect(name: string, stream: PolicyStream): void {
    const live = this.streams.get(name);
    if (!live?.delete(stream)) return;
    if (live.size === 0) this.streams.delete(name);
    this.telemetry.policyStreamsWaiting(name, live.size);
  }
}
