import type { Deployment } from "./deployment";

export interface DeploymentChanges {
  readonly added: readonly Deployment[];
  /** Deployments whose policy id differs in the newer set (the newer version). */
  readonly changed: readonly Deployment[];
  readonly removed: readonly Deployment[];
}

/** An immutable set of deployments, keyed by name. A config swap replaces the whole set. */
export class DeploymentSet {
  private readonly byName: ReadonlyMap<string, Deployment>;

  constructor(deployments: Iterable<Deployment>) {
    const byName = new Map<string, Deployment>();
    for (const deployment of deployments) byName.set(deployment.name, deployment);
    this.byName = byName;
  }

  get(name: string): Deployment | undefined {
    return this.byName.get(name);
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
