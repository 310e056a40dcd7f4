import { LOG_LEVELS, type LogLevel } from "../adapters/winston/logger";

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
}

export class SettingsError extends Error {
  readonly code = "invalid_setting";
}

const DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

export function readSettings(env: NodeJS.ProcessEnv): Settings {
  return {
    ingestionBind: parseBind("LS_INGESTION_BIND", env.LS_INGESTION_BIND || "0.0.0.0:8121"),
    prometheusBind: parseBind("LS_PROMETHEUS_BIND", env.LS_PROMETHEUS_BIND || "0.0.0.0:9176"),
    configPath: env.LS_CONFIG_PATH || undefined,
    bundleDir: env.LS_BUNDLE_DIR || undefined,
    logLevel: parseLogLevel(env.LS_LOG_LEVEL || "info"),
    maxMessageBytes: parseSize("LS_MAX_MESSAGE_BYTES", env.LS_MAX_MESSAGE_BYTES, DEFAULT_MAX_MESSAGE_BYTES),
    strictConfig: parseBoolean("LS_CONFIG_STRICT", env.LS_CONFIG_STRICT),
  };
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
  if (value === undefined || value === "") return fallback;
  const bytes = Number(value);
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new SettingsError(`${name}="${value}" is not a positive number of bytes`);
  }
  return bytes;
}

function parseBoolean(name: string, value: string | undefined): boolean {
  if (value === undefined || value === "") return false;
  if (/^(true|1|yes)$/i.test(value)) return true;
  if (/^(false|0|no)$/i.test(value)) return false;
  throw new SettingsError(`${name}="${value}" is not a boolean; expected true or false`);
}
