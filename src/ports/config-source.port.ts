import type { DeploymentSet } from "../domain/policy/deployment-set";
import type { TelemetrySettings } from "./telemetry-sink.port";

export type ProxySourceConfig =
  | { readonly type: "bundled"; readonly path: string }
  | { readonly type: "remote_passthrough"; readonly origin: string };

/** A fully validated configuration. The agent swaps it whole, never in part. */
export interface AgentConfig {
  /** Where it came from: a file path, or "embedded default". */
  readonly source: string;
  readonly deployments: DeploymentSet;
  readonly proxySource: ProxySourceConfig | undefined;
  readonly telemetry: TelemetrySettings;
}

/** One problem in a config document, located as precisely as the input allows. */
export interface ConfigProblem {
  readonly file: string;
  readonly line?: number | undefined;
  readonly column?: number | undefined;
  /** Path inside the document, e.g. `policies.example.endpoints[0].config`. */
  readonly path?: string | undefined;
  readonly message: string;
}

export class ConfigError extends Error {
  readonly code = "invalid_config";
  constructor(readonly problems: readonly ConfigProblem[]) {
    super(problems.map(formatConfigProblem).join("\n"));
  }
}

/** `file:line:column: path: message`, the form editors and CI logs link to. */
export function formatConfigProblem(problem: ConfigProblem): string {
  let where = problem.file;
  if (problem.line !== undefined) where += `:${problem.line}`;
  if (problem.line !== undefined && problem.column !== undefined) where += `:${problem.column}`;
  return problem.path ? `${where}: ${problem.path}: ${problem.message}` : `${where}: ${problem.message}`;
}

export type ConfigReload = { readonly config: AgentConfig } | { readonly error: Error };

/** Where the agent's configuration comes from. */
export interface ConfigSource {
  /** Loads and validates the configuration; throws ConfigError listing every problem. */
  load(): Promise<AgentConfig>;
  /** Watches for changes and reports each reload attempt until stop(). */
  start(onReload: (reload: ConfigReload) => void): Promise<void>;
  /** Re-reads now and reports the attempt, changed or not (SIGHUP). */
  reload(): Promise<void>;
  stop(): Promise<void>;
}

export const ConfigSource = Symbol.for("leakagent.ConfigSource");
