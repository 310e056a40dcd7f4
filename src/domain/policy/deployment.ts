import { createHash } from "node:crypto";

/** A deployment: the policy its proxies run, and what they must present to get it. */
export interface Deployment {
  readonly name: string;
  /** Stable content hash of `policyText`: unchanged text keeps its id across reloads and restarts. */
  readonly policyId: string;
  /** The policy as proxies receive it (YAML). */
  readonly policyText: string;
  /**
   * SHA-256 digests of the api keys its proxies must present (`api_keys:` in the config). Empty: the name is
   * the key, as in the original agent. Only digests are kept, so a key cannot reach a log or a label.
   */
  readonly apiKeyDigests: readonly Buffer[];
}

export function createDeployment(name: string, policyText: string, apiKeys: readonly string[] = []): Deployment {
  return { name, policyText, policyId: policyIdOf(policyText), apiKeyDigests: apiKeys.map(credentialDigest) };
}

/** First 16 hex digits (64 bits) of the SHA-256 of the policy text: short enough for a metric label. */
export function policyIdOf(policyText: string): string {
  return createHash("sha256").update(policyText, "utf8").digest("hex").slice(0, 16);
}

/** Fixed-length form of a credential, so it can be looked up and compared in constant time. */
export function credentialDigest(credential: string): Buffer {
  return createHash("sha256").update(credential, "utf8").digest();
}

/** What a proxy presents: current proxies send only `api_key`, 2022-era ones `deployment_name`. */
export interface ProxyCredentials {
  apiKey?: string | undefined;
  deploymentName: string;
}

/** The credential a proxy presents: its api_key when set, else its deployment_name. */
export function claimedDeployment(credentials: ProxyCredentials): string {
  return credentials.apiKey ? credentials.apiKey : credentials.deploymentName;
}
