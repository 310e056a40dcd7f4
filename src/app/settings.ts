import { INGESTION_DEFAULTS, type IngestionLimits } from "../adapters/ingestion/ingestion-server";
import type { KeepaliveOptions } from "../adapters/ingestion/keepalive";
import type { TlsFiles } from "../adapters/ingestion/tls-credentials";
import { defaultProxySourceOptions, type ProxySourceOptions } from "../adapters/proxy-source/options";
import { LOG_LEVELS, type LogLevel } from "../adapters/winston/logger";
import { DEFAULT_POLICY_STREAM_LIMITS, type PolicyStreamLimits } from "../domain/proxies/proxy-registry";

export interface Bind {
  readonly host: string;
  readonly port: number;
}

/** Everything the agent reads from its environment, validated once at start-up. */
export interface Settings {
  readonly ingestionBind: Bind;
  readonly prometheusBind: Bind;
  readonly configPath: string | undefined;
  readonly bundleDir: string | undefined;
  readonly logLevel: LogLevel;
  readonly maxMessageBytes: number;
  /** Unknown policy keys are errors instead of warnings. */
  readonly strictConfig: boolean;
  /** Proxy connections older than this are closed gracefully (±10 %) so they rebalance over pods; 0 = never. */
  readonly maxConnectionAgeSeconds: number;
  /** How `remote_passthrough` fetches and caches modules. */
  readonly proxySource: ProxySourceOptions;
  /** Per-connection limits and timeouts of the ingestion port (docs/operations.md). */
  readonly ingestionLimits: IngestionLimits;
  /** Policy streams held open at most, per deployment and in all. */
  readonly policyStreamLimits: PolicyStreamLimits;
  /** Server PINGs that find dead proxy connections. */
  readonly keepalive: KeepaliveOptions;
  /** TLS on the ingestion port; undefined: cleartext (h2c). */
  readonly tls: TlsFiles | undefined;
  /** On SIGTERM, how long `/ready` answers 503 while everything is still served, before the agent stops accepting. */
  readonly shutdownDelayMs: number;
}

export class SettingsError extends Error {
  readonly code = "invalid_setting";
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;
/** Where the agent listens by default (also what deploy/ and the docs assume). */
export const DEFAULT_INGESTION_BIND = "0.0.0.0:8121";
export const DEFAULT_PROMETHEUS_BIND = "0.0.0.0:9176";
export const DEFAULT_MAX_CONNECTION_AGE_SECONDS = INGESTION_DEFAULTS.maxConnectionAgeMs / 1000;
export const DEFAULT_SHUTDOWN_DELAY_MS = 2_000;
/** The delay plus the 5 s drain must fit, with a margin, in the 10 s shutdown deadline (SHUTDOWN_DEADLINE_MS in main.ts). */
export const MAX_SHUTDOWN_DELAY_MS = 4_000;

export function readSettings(env: NodeJS.ProcessEnv): Settings {
  const limits = INGESTION_DEFAULTS.limits;
  const whole = (name: string, fallback: number, min: number, unit: string) =>
    parseInteger(name, env[name], fallback, min, unit);
  return {
    ingestionBind: parseBind("LS_INGESTION_BIND", env.LS_INGESTION_BIND || DEFAULT_INGESTION_BIND),
    prometheusBind: parseBind("LS_PROMETHEUS_BIND", env.LS_PROMETHEUS_BIND || DEFAULT_PROMETHEUS_BIND),
    configPath: env.LS_CONFIG_PATH || undefined,
    bundleDir: env.LS_BUNDLE_DIR || undefined,
    logLevel: parseLogLevel(env.LS_LOG_LEVEL || "info"),
    maxMessageBytes: parseSize("LS_MAX_MESSAGE_BYTES", env.LS_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES),
    strictConfig: parseBoolean("LS_CONFIG_STRICT", env.LS_CONFIG_STRICT),
    maxConnectionAgeSeconds: parseInteger(
      "LS_MAX_CONNECTION_AGE_SECONDS",
      env.LS_MAX_CONNECTION_AGE_SECONDS,
      DEFAULT_MAX_CONNECTION_AGE_SECONDS,
      0,
      "seconds",
    ),
    proxySource: {
      // 0 turns the cache off: every pull then goes to the origin (still one request per concurrent burst).
      cacheMaxBytes: parseInteger(
        "LS_PROXY_CACHE_MAX_BYTES",
        env.LS_PROXY_CACHE_MAX_BYTES,
        defaultProxySourceOptions.cacheMaxBytes,
        0,
        "bytes",
      ),
      headersTimeoutMs: parseInteger(
        "LS_PROXY_ORIGIN_HEADERS_TIMEOUT_MS",
        env.LS_PROXY_ORIGIN_HEADERS_TIMEOUT_MS,
        defaultProxySourceOptions.headersTimeoutMs,
        1,
        "milliseconds",
      ),
      totalTimeoutMs: parseInteger(
        "LS_PROXY_ORIGIN_TIMEOUT_MS",
        env.LS_PROXY_ORIGIN_TIMEOUT_MS,
        defaultProxySourceOptions.totalTimeoutMs,
        1,
        "milliseconds",
      ),
    },
    ingestionLimits: {
      maxConcurrentStreams: whole("LS_MAX_CONCURRENT_STREAMS", limits.maxConcurrentStreams, 1, "streams"),
      maxSessionMemoryMb: whole("LS_HTTP2_MAX_SESSION_MEMORY_MB", limits.maxSessionMemoryMb, 1, "MiB"),
      maxPolicyBacklogBytes: whole("LS_MAX_POLICY_BACKLOG_BYTES", limits.maxPolicyBacklogBytes, 1, "bytes"),
      handshakeTimeoutMs: whole("LS_HANDSHAKE_TIMEOUT_MS", limits.handshakeTimeoutMs, 1, "milliseconds"),
      http1RequestTimeoutMs: whole("LS_HTTP1_REQUEST_TIMEOUT_MS", limits.http1RequestTimeoutMs, 1, "milliseconds"),
      http1IdleTimeoutMs: whole("LS_HTTP1_IDLE_TIMEOUT_MS", limits.http1IdleTimeoutMs, 1, "milliseconds"),
    },
    policyStreamLimits: {
      maxStreams: whole("LS_MAX_POLICY_STREAMS", DEFAULT_POLICY_STREAM_LIMITS.maxStreams, 1, "streams"),
      maxStreamsPerDeployment: whole(
        "LS_MAX_POLICY_STREAMS_PER_DEPLOYMENT",
        DEFAULT_POLICY_STREAM_LIMITS.maxStreamsPerDeployment,
        1,
        "streams",
      ),
    },
    keepalive: {
      intervalMs: whole("LS_KEEPALIVE_INTERVAL_MS", INGESTION_DEFAULTS.keepalive.intervalMs, 0, "milliseconds"),
      timeoutMs: whole("LS_KEEPALIVE_TIMEOUT_MS", INGESTION_DEFAULTS.keepalive.timeoutMs, 1, "milliseconds"),
    },
    tls: parseTls(env),
    shutdownDelayMs: parseShutdownDelay(env.LS_SHUTDOWN_DELAY_MS),
  };
}

/** Certificate and key come together; a client CA (mutual TLS) needs both. */
function parseTls(env: NodeJS.ProcessEnv): TlsFiles | undefined {
  const certPath = env.LS_TLS_CERT_PATH || undefined;
  const keyPath = env.LS_TLS_KEY_PATH || undefined;
  const clientCaPath = env.LS_TLS_CLIENT_CA_PATH || undefined;
  if (certPath && keyPath) return { certPath, keyPath, clientCaPath };
  if (certPath || keyPath) {
    const missing = certPath ? "LS_TLS_KEY_PATH" : "LS_TLS_CERT_PATH";
    throw new SettingsError(`${missing} is not set; TLS needs both LS_TLS_CERT_PATH and LS_TLS_KEY_PATH`);
  }
  if (clientCaPath) {
    throw new SettingsError("LS_TLS_CLIENT_CA_PATH is set without LS_TLS_CERT_PATH and LS_TLS_KEY_PATH");
  }
  return undefined;
}

function parseShutdownDelay(value: string | undefined): number {
  const delay = parseInteger("LS_SHUTDOWN_DELAY_MS", value, DEFAULT_SHUTDOWN_DELAY_MS, 0, "milliseconds");
  if (delay > MAX_SHUTDOWN_DELAY_MS) {
    throw new SettingsError(`LS_SHUTDOWN_DELAY_MS="${value}" is more than ${MAX_SHUTDOWN_DELAY_MS} milliseconds`);
  }
  return delay;
}

/** `host:port`, `[v6]:port` or `:port` (all interfaces). */
export function parseBind(name: string, value: string): Bind {
  const match = /^(?:\[([0-9a-fA-F:.]+)\]|([^:[\]\s]*)):(\d{1,5})$/.exec(value.trim());
  const port = match ? Number(match[3]) : Number.NaN;
  if (!match || port > 65535) {
    throw new SettingsError(
      `${name}="${value}" is not a socket address; expected host:port, e.g. 0.0.0.0:8121 or [::]:8121`,
    );
  }
  return { host: match[1] ?? (match[2] || "0.0.0.0"), port };
}

function parseLogLevel(value: string): LogLevel {
  const level = value.trim().toLowerCase();
  if ((LOG_LEVELS as readonly string[]).includes(level)) return level as LogLevel;
  throw new SettingsError(`LS_LOG_LEVEL="${value}" is not one of ${LOG_LEVELS.join(", ")}`);
}

function parseSize(name: string, value: string | undefined, fallback: number): number {
  return parseInteger(name, value, fallback, 1, "bytes");
}

/** A whole number of `unit`, at least `min`; digits only, so `1e3`, `0x10` and `10MB` are refused. */
function parseInteger(name: string, value: string | undefined, fallback: number, min: number, unit: string): number {
  if (value === undefined || value === "") return fallback;
  const number = /^\s*\d+\s*$/.test(value) ? Number(value) : Number.NaN;
  if (!Number.isSafeInteger(number) || number < min) {
    const expected = min === 0 ? `a whole number of ${unit} (0 or more)` : `a positive whole number of ${unit}`;
    throw new SettingsError(`${name}="${value}" is not ${expected}`);
  }
  return number;
}

function parseBoolean(name: string, value: string | undefined): boolean {
  if (value === undefined || value === "") return false;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new SettingsError(`${name}="${value}" is not a boolean; expected true or false`);
}
