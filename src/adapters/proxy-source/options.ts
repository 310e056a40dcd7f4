/** How the agent fetches and keeps Wasm modules for the `remote_passthrough` proxy source. */
export interface ProxySourceOptions {
  /** Upper bound on the bytes of origin responses kept in memory; least recently used go first. */
  readonly cacheMaxBytes: number;
  /** How long to wait for the origin's response headers, connecting included. */
  readonly headersTimeoutMs: number;
  /** How long one origin download may take from start to last byte. */
  readonly totalTimeoutMs: number;
}

export const defaultProxySourceOptions: ProxySourceOptions = {
  cacheMaxBytes: 256 * 1024 * 1024,
  headersTimeoutMs: 10_000,
  totalTimeoutMs: 120_000,
};
