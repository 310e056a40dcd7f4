import { createHash } from "node:crypto";

/** A deployment: the key proxies authenticate with, and the policy they run. */
export interface Deployment {
  readonly name: string;
  /** Stable content hash of `policyText`: unchanged text keeps its id across reloads and restarts. */
  readonly policyId: string;
  /** The policy as proxies receive it (YAML). */
  readonly policyText: string;
}

export function createDeployment(name: string, policyText: string): Deployment {
  return { name, policyText, policyId: policyIdOf(policyText) };
}

/** First 16 hex digits (64 bits) of the SHA-256 of the policy text: short enough for a metric label. */
export function policyIdOf(policyText: string): string {
  return createHash("sha256").update(policyText, "utf8").digest("hex").slice(0, 16);
}

/** What a proxy presents: current proxies send only `api_key`, 2022-era ones `deployment_name`. */
export interface ProxyCredentials {
  apiKey?: string | undefined;
  deploymentName: string;
}

/** The deployment a proxy claims: its api_key when set, else its deployment_name. */
export function claimedDeployment(credentials: ProxyCredentials): string {
  return credentials.apiKey ? credentials.apiKey : credentials.deploymentName;
}
