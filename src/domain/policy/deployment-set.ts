import { timingSafeEqual } from "node:crypto";
import { credentialDigest, type Deployment } from "./deployment";

export interface DeploymentChanges {
  readonly added: readonly Deployment[];
  /** Deployments whose policy id differs in the newer set (the newer version). */
  readonly changed: readonly Deployment[];
  readonly removed: readonly Deployment[];
}

/** An immutable set of deployments, keyed by name. A config swap replaces the whole set. */
export class DeploymentSet {
  private readonly byName: ReadonlyMap<string, Deployment>;
  /** Hex credential digest → deployment: each api key, and the name of each deployment without keys. */
  private readonly byCredential: ReadonlyMap<string, { readonly deployment: Deployment; readonly digest: Buffer }>;

  /** Throws when two deployments accept the same credential (the config parser reports it first). */
  constructor(deployments: Iterable<Deployment>) {
    const byName = new Map<string, Deployment>();
    for (const deployment of deployments) byName.set(deployment.name, deployment);
    const byCredential = new Map<string, { deployment: Deployment; digest: Buffer }>();
    for (const deployment of byName.values()) {
      const digests =
        deployment.apiKeyDigests.length > 0 ? deployment.apiKeyDigests : [credentialDigest(deployment.name)];
      for (const digest of digests) {
        const hex = digest.toString("hex");
        const other = byCredential.get(hex)?.deployment;
        if (other && other !== deployment) {
          throw new Error(`deployments "${other.name}" and "${deployment.name}" accept the same credential`);
        }
        byCredential.set(hex, { deployment, digest });
      }
    }
    this.byName = byName;
    this.byCredential = byCredential;
  }

  get(name: string): Deployment | undefined {
    return this.byName.get(name);
  }

  /**
   * The deployment a proxy's credential opens: one of its api keys, or its name when it has none.
   * The lookup is by digest, so its timing says nothing about a key; the final check is constant-time.
   */
  resolve(credential: string): Deployment | undefined {
    if (credential === "") return undefined;
    const digest = credentialDigest(credential);
    const entry = this.byCredential.get(digest.toString("hex"));
    return entry && timingSafeEqual(entry.digest, digest) ? entry.deployment : undefined;
  }

  get size(): number {
    return this.byName.size;
  }

  names(): string[] {
    return [...this.byName.keys()];
  }

  /** What changed from this set to `next`. */
  changesTo(next: DeploymentSet): DeploymentChanges {
    const added: Deployment[] = [];
    const changed: Deployment[] = [];
    const removed: Deployment[] = [];
    for (const deployment of next.byName.values()) {
      const previous = this.byName.get(deployment.name);
      if (!previous) added.push(deployment);
      else if (previous.policyId !== deployment.policyId) changed.push(deployment);
    }
    for (const deployment of this.byName.values()) {
      if (!next.byName.has(deployment.name)) removed.push(deployment);
    }
    return { added, changed, removed };
  }
}
