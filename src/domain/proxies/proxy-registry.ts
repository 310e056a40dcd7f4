import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import { claimedDeployment, type Deployment, type ProxyCredentials } from "../policy/deployment";
import { type DeploymentChanges, DeploymentSet } from "../policy/deployment-set";

/**
 * Why the agent ends a policy stream. `key_revoked`: after a reload, the credential the proxy connected with no
 * longer opens its deployment (key removed or moved, or keys given to a deployment that used to take its name).
 */
export type PolicyStreamEnd = "deployment_removed" | "key_revoked" | "shutdown";

/** The agent's side of one proxy's open UpdatePolicy stream. */
export interface PolicyStream {
  send(deployment: Deployment): void;
  /** End the stream from the agent's side. The registry has already forgotten it. */
  end(reason: PolicyStreamEnd): void;
}

/** The label value of a refused proxy that named no configured deployment (see turnawayLabel). */
export const UNKNOWN_DEPLOYMENT_LABEL = "unknown";

export class UnknownDeploymentError extends Error {
  readonly code = "unknown_deployment";
  /** The presented credential is not kept or echoed: it may be a secret key. */
  constructor(credential: string) {
    super(credential ? "unknown deployment or api key" : "no api_key or deployment_name given");
  }
}

export class PolicyStreamLimitError extends Error {
  readonly code = "policy_stream_limit";
  constructor(
    readonly limit: number,
    scope: "deployment" | "agent",
  ) {
    super(
      scope === "deployment"
        ? `this deployment already has ${limit} policy streams open on this agent; retry later or on another instance`
        : `this agent already has ${limit} policy streams open; retry later or on another instance`,
    );
  }
}

/** How many policy streams the agent holds open at most; each costs memory on every policy push. */
export interface PolicyStreamLimits {
  readonly maxStreams: number;
  readonly maxStreamsPerDeployment: number;
}

export const DEFAULT_POLICY_STREAM_LIMITS: PolicyStreamLimits = { maxStreams: 10_000, maxStreamsPerDeployment: 5_000 };

/**
 * The deployments the agent serves and the proxies connected to them.
 * Every live policy stream is held here, so the waiting count is exact however a stream ends.
 */
export class ProxyRegistry {
  private deployments = new DeploymentSet([]);
  /** Live streams by deployment name, each with the credential it connected with (re-checked on reloads). */
  private readonly streams = new Map<string, Map<PolicyStream, string>>();
  private total = 0;

  constructor(
    private readonly telemetry: TelemetrySink,
    private readonly limits: PolicyStreamLimits = DEFAULT_POLICY_STREAM_LIMITS,
  ) {}

  get current(): DeploymentSet {
    return this.deployments;
  }

  /** The deployment a proxy's credentials name, if the agent serves it. */
  resolve(credentials: ProxyCredentials): Deployment | undefined {
    return this.deployments.resolve(claimedDeployment(credentials));
  }

  /**
   * Registers a proxy's policy stream and sends it the current policy.
   * Returns the function that unregisters it (safe to call more than once).
   */
  connect(credentials: ProxyCredentials, ip: string, stream: PolicyStream): () => void {
    const credential = claimedDeployment(credentials);
    const deployment = this.deployments.resolve(credential);
    if (!deployment) {
      this.telemetry.proxyTurnedAway(this.turnawayLabel(credentials), ip);
      throw new UnknownDeploymentError(credential);
    }
    const name = deployment.name;
    let live = this.streams.get(name);
    if ((live?.size ?? 0) >= this.limits.maxStreamsPerDeployment) {
      throw new PolicyStreamLimitError(this.limits.maxStreamsPerDeployment, "deployment");
    }
    if (this.total >= this.limits.maxStreams) throw new PolicyStreamLimitError(this.limits.maxStreams, "agent");
    if (!live) {
      live = new Map();
      this.streams.set(name, live);
    }
    live.set(stream, credential);
    this.total++;
    this.telemetry.policyStreamOpened(name, ip, deployment.policyId);
    this.telemetry.policyStreamsWaiting(name, live.size);
    this.send(stream, deployment);
    return () => this.disconnect(name, stream);
  }

  /**
   * Swaps in a new set of deployments: streams of removed deployments are ended, and so are streams whose
   * credential no longer opens their deployment; the rest of a changed deployment's streams get the new
   * policy, unchanged ones get nothing.
   */
  replaceDeployments(next: DeploymentSet): DeploymentChanges {
    const changes = this.deployments.changesTo(next);
    this.deployments = next;
    for (const deployment of changes.removed) this.endAll(deployment.name, "deployment_removed");
    for (const [name, live] of [...this.streams]) {
      for (const [stream, credential] of [...live]) {
        if (next.resolve(credential)?.name === name) continue;
        this.disconnect(name, stream);
        stream.end("key_revoked");
      }
    }
    for (const deployment of changes.changed) {
      for (const stream of this.streams.get(deployment.name)?.keys() ?? []) this.send(stream, deployment);
    }
    return changes;
  }

  /** Ends every live stream (on shutdown). */
  disconnectAll(reason: PolicyStreamEnd): void {
    for (const name of [...this.streams.keys()]) this.endAll(name, reason);
  }

  waiting(deployment: string): number {
    return this.streams.get(deployment)?.size ?? 0;
  }

  /** Live policy streams of all deployments. */
  get waitingTotal(): number {
    return this.total;
  }

  /**
   * What a refused proxy is counted under in `leakagent_policy_update_turnaway`: a configured deployment's name
   * it presented (e.g. the name of a deployment that now wants a key), else "unknown". Never the presented
   * credential itself, which may be a secret key, and never an unbounded set of values.
   */
  private turnawayLabel(credentials: ProxyCredentials): string {
    for (const presented of [credentials.apiKey, credentials.deploymentName]) {
      if (presented && this.deployments.get(presented)) return presented;
    }
    return UNKNOWN_DEPLOYMENT_LABEL;
  }

  private send(stream: PolicyStream, deployment: Deployment): void {
    stream.send(deployment);
    this.telemetry.policySent(deployment.name, deployment.policyId);
  }

  private endAll(name: string, reason: PolicyStreamEnd): void {
    const live = this.streams.get(name);
    if (!live) return;
    this.streams.delete(name);
    this.total -= live.size;
    this.telemetry.policyStreamsWaiting(name, 0);
    for (const stream of live.keys()) stream.end(reason);
  }

  private disconnect(name: string, stream: PolicyStream): void {
    const live = this.streams.get(name);
    if (!live?.delete(stream)) return;
    this.total--;
    if (live.size === 0) this.streams.delete(name);
    this.telemetry.policyStreamsWaiting(name, live.size);
  }
}
