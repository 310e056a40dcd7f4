import { readFile } from "node:fs/promises";
import { Ajv, type ErrorObject, type ValidateFunction } from "ajv";
import { createDeployment, type Deployment } from "../../domain/policy/deployment";
import { DeploymentSet } from "../../domain/policy/deployment-set";
import {
  type AgentConfig,
  ConfigError,
  type ConfigProblem,
  formatConfigProblem,
  type ProxySourceConfig,
} from "../../ports/config-source.port";
import { DEFAULT_TELEMETRY_SETTINGS, type LabelMode, type TelemetrySettings } from "../../ports/telemetry-sink.port";
import { configSchema } from "./config-schema";
import { policySchema } from "./policy-schema";
import {
  AliasExpansionError,
  displayPath,
  type PathSegment,
  pointerOf,
  readYamlDocument,
  type SourceSpan,
  type YamlDocument,
  type YamlProblem,
} from "./yaml-document";

export interface ParseConfigOptions {
  /** Unknown keys become errors instead of warnings. */
  readonly strict?: boolean | undefined;
  /** `LS_BUNDLE_DIR`: when set, non-empty and `proxy_source` is not set, proxies are served from this directory. */
  readonly bundleDir?: string | undefined;
}

export interface ParsedConfig {
  readonly config: AgentConfig;
  readonly warnings: ConfigProblem[];
}

/** The config used when no file is configured: the example deployment of the LeakAgent documentation. */
export const EMBEDDED_DEFAULT_CONFIG = `# Used when LS_CONFIG_PATH is not set.
policies:
  example:
    categories:
      bank_routing_us:
        Matchers:
          - regex: "(?-u:\\\\b)(0[0-9]|11|12|2[1-9]|30|31|32|6[1-9]|70|71|72|80)\\\\d{7}(?-u:\\\\b)"
          - and:
              - internal: routing_number
    endpoints:
      - matches: "**"
        config:
          bank_routing_us: {}
`;

export const EMBEDDED_DEFAULT_SOURCE = "embedded default";

export function parseEmbeddedDefaultConfig(options: ParseConfigOptions = {}): ParsedConfig {
  return parseConfig(EMBEDDED_DEFAULT_CONFIG, EMBEDDED_DEFAULT_SOURCE, options);
}

/**
 * Reads and validates a config document: the one function used at boot, by `leakagent validate` and on every
 * reload. Throws ConfigError listing every error; returns warnings (unknown keys) alongside the config.
 */
export function parseConfig(text: string, file: string, options: ParseConfigOptions = {}): ParsedConfig {
  const { config, errors, warnings } = checkConfig(text, file, options);
  if (!config || errors.length > 0) throw new ConfigError(errors);
  return { config, warnings };
}

/** Everything wrong with a config document, errors and warnings apart, and the config when there are no errors. */
export function checkConfig(
  text: string,
  file: string,
  options: ParseConfigOptions = {},
): { config?: AgentConfig; errors: ConfigProblem[]; warnings: ConfigProblem[] } {
  const located = (problem: YamlProblem): ConfigProblem => ({
    file,
    line: problem.span?.line,
    column: problem.span?.column,
    path: problem.path && problem.path.length > 0 ? displayPath(problem.path) : undefined,
    message: problem.message,
  });

  const { document, problems } = readYamlDocument(text);
  const errors = problems.map(located);
  const warnings: ConfigProblem[] = [];
  if (!document) return { errors, warnings };

  const schema = checkSchema(document);
  errors.push(...schema.errors.map(located));
  (options.strict ? errors : warnings).push(...schema.unknownKeys.map(located));
  errors.push(...checkDeploymentNames(document).map(located));
  errors.push(...checkApiKeys(document).map(located));

  let config: AgentConfig | undefined;
  if (errors.length === 0) {
    const deployments: Deployment[] = [];
    const { policies, api_keys: apiKeys } = document.value as {
      policies: Record<string, unknown>;
      api_keys?: Record<string, string[]> | null;
    };
    for (const name of Object.keys(policies)) {
      const path = ["policies", name];
      try {
        deployments.push(createDeployment(name, document.textAt(path) ?? "", apiKeys?.[name] ?? []));
      } catch (error) {
        if (!(error instanceof AliasExpansionError)) throw error;
        errors.push(located({ span: document.keySpan(pointerOf(path)), path, message: error.message }));
      }
    }
    config = {
      source: file,
      deployments: new DeploymentSet(deployments),
      proxySource: proxySourceOf(document.value, options.bundleDir),
      telemetry: telemetryOf(document.value),
    };
  }
  return { config, errors: inDocumentOrder(errors), warnings: inDocumentOrder(warnings) };
}

/**
 * `leakagent validate`: checks a file exactly as the agent would. `lines` holds every error and warning as the
 * agent would log them; `ok` is false when there is an error (a warning alone is fine unless `strict`).
 */
export async function validateConfigFile(
  path: string,
  options: ParseConfigOptions = {},
): Promise<{ ok: boolean; lines: string[] }> {
  let text: string;
  try {
    text = await readConfigText(path);
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    return { ok: false, lines: error.problems.map(formatConfigProblem) };
  }
  const { errors, warnings } = checkConfig(text, path, options);
  const lines = inDocumentOrder([...errors, ...warnings.map(asWarning)]).map(formatConfigProblem);
  return { ok: errors.length === 0, lines };
}

/** A warning as printed: the same problem, its message marked `warning:`. */
export function asWarning(problem: ConfigProblem): ConfigProblem {
  return { ...problem, message: `warning: ${problem.message}` };
}

/** Reads a config file; a missing or unreadable file is a ConfigError naming the path. */
export async function readConfigText(path: string): Promise<string> {
  try {
    return await readFile(path, "utf8");
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason =
      code === "ENOENT"
        ? "no such file"
        : code === "EACCES" || code === "EPERM"
          ? "permission denied"
          : code === "EISDIR"
            ? "is a directory, not a file"
            : (error as Error).message;
    throw new ConfigError([{ file: path, message: `cannot read the config file: ${reason}` }]);
  }
}

function proxySourceOf(value: unknown, bundleDir: string | undefined): ProxySourceConfig | undefined {
  const configured = (value as { proxy_source?: Record<string, string> | null }).proxy_source;
  if (configured && Object.keys(configured).length > 0) {
    if (configured.type === "bundled") return { type: "bundled", path: configured.path ?? "" };
    return { type: "remote_passthrough", origin: configured.origin ?? "" };
  }
  return bundleDir ? { type: "bundled", path: bundleDir } : undefined;
}

interface MetricsSection {
  max_series_per_metric?: number;
  series_ttl?: string;
  labels?: { ip?: LabelMode; token?: LabelMode } | null;
  label_hash_key?: string;
}

/** The `metrics` section over the defaults; the schema has checked every value. */
function telemetryOf(value: unknown): TelemetrySettings {
  const metrics = (value as { metrics?: MetricsSection | null }).metrics ?? {};
  const defaults = DEFAULT_TELEMETRY_SETTINGS;
  return {
    maxSeriesPerMetric: metrics.max_series_per_metric ?? defaults.maxSeriesPerMetric,
    seriesTtlMs: metrics.series_ttl === undefined ? defaults.seriesTtlMs : durationMs(metrics.series_ttl),
    ipLabel: metrics.labels?.ip ?? defaults.ipLabel,
    tokenLabel: metrics.labels?.token ?? defaults.tokenLabel,
    labelHashKey: metrics.label_hash_key,
  };
}

const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** A duration matching DURATION_PATTERN, in milliseconds. */
function durationMs(duration: string): number {
  const [, amount = "0", unit = "s"] = /^([0-9]+)([a-z]+)$/.exec(duration) ?? [];
  return Number(amount) * (UNIT_MS[unit] ?? 1000);
}

/** Deployment names are the keys proxies authenticate with, unless `api_keys` gives them keys. */
function checkDeploymentNames(document: YamlDocument): YamlProblem[] {
  const policies = (document.value as { policies?: unknown } | null)?.policies;
  if (policies === null || typeof policies !== "object") return [];
  return Object.keys(policies)
    .filter((name) => name.trim() === "")
    .map((name) => ({
      span: document.keySpan(pointerOf(["policies", name])),
      path: ["policies", name],
      message: "a deployment name must not be empty or blank",
    }));
}

/**
 * `api_keys` must name configured deployments, and each credential must open exactly one deployment: a key
 * listed for two deployments, or equal to the name of a deployment that takes its name as key, is ambiguous.
 * Messages name deployments and lines, never the key.
 */
function checkApiKeys(document: YamlDocument): YamlProblem[] {
  const { policies, api_keys: apiKeys } = (document.value ?? {}) as { policies?: unknown; api_keys?: unknown };
  if (apiKeys === null || typeof apiKeys !== "object" || Array.isArray(apiKeys)) return [];
  if (policies === null || typeof policies !== "object") return [];
  const problems: YamlProblem[] = [];
  const keyed = apiKeys as Record<string, unknown>;
  const firstSeen = new Map<string, { deployment: string; line: number | undefined }>();
  for (const [deployment, keys] of Object.entries(keyed)) {
    if (!Object.hasOwn(policies, deployment)) {
      const path = ["api_keys", deployment];
      problems.push({ span: document.keySpan(pointerOf(path)), path, message: "is not a deployment in policies" });
      continue;
    }
    if (!Array.isArray(keys)) continue;
    keys.forEach((key: unknown, index) => {
      if (typeof key !== "string" || key === "") return;
      const path = ["api_keys", deployment, index];
      const span = document.locate(pointerOf(path))?.span;
      const first = firstSeen.get(key);
      if (first && first.deployment !== deployment) {
        const where = first.line === undefined ? "" : ` (line ${first.line})`;
        problems.push({ span, path, message: `this key is also listed for deployment "${first.deployment}"${where}` });
      } else if (!first && Object.hasOwn(policies, key) && key !== deployment && !Object.hasOwn(keyed, key)) {
        problems.push({
          span,
          path,
          message: `this key is the name of deployment "${key}", which has no api_keys and so takes its name as key`,
        });
      }
      if (!first) firstSeen.set(key, { deployment, line: span?.line });
    });
  }
  return problems;
}

let compiled: ValidateFunction | undefined;

function configValidator(): ValidateFunction {
  if (!compiled) {
    const ajv = new Ajv({ allErrors: true, allowUnionTypes: true, verbose: true });
    ajv.addKeyword({ keyword: "messages", schemaType: "object" });
    ajv.addSchema(policySchema);
    compiled = ajv.compile(configSchema);
  }
  return compiled;
}

/** Schema errors, and unknown keys apart since they are only warnings unless strict. */
function checkSchema(document: YamlDocument): { errors: YamlProblem[]; unknownKeys: YamlProblem[] } {
  const validate = configValidator();
  const errors: YamlProblem[] = [];
  const unknownKeys: YamlProblem[] = [];
  if (validate(document.value)) return { errors, unknownKeys };
  const seen = new Set<string>();
  for (const error of validate.errors ?? []) {
    // `if` only says its branch failed; the branch's own errors say why.
    if (error.keyword === "if") continue;
    const problem = describe(error, document);
    // One type error per node: a union's own type check already says what is accepted.
    const key = `${pointerOf(problem.path ?? [])}\u0000${error.keyword === "type" ? "type" : problem.message}`;
    if (seen.has(key)) continue;
    seen.add(key);
    (error.keyword === "additionalProperties" ? unknownKeys : errors).push(problem);
  }
  return { errors, unknownKeys };
}

function describe(error: ErrorObject, document: YamlDocument): YamlProblem {
  const parent = (error.parentSchema ?? {}) as { messages?: Record<string, string>; properties?: object };
  const params = error.params as Record<string, unknown>;
  let pointer = error.instancePath;
  let span: SourceSpan | undefined;
  let message = error.message ?? "is invalid";
  switch (error.keyword) {
    case "additionalProperties": {
      const key = String(params.additionalProperty);
      pointer = `${pointer}${pointerOf([key])}`;
      span = document.keySpan(pointer);
      message = unknownKeyMessage(key, Object.keys(parent.properties ?? {}));
      break;
    }
    case "required":
      message = `missing required key ${JSON.stringify(params.missingProperty)}`;
      break;
    case "enum":
      message = `must be one of: ${(params.allowedValues as unknown[]).join(", ")}`;
      break;
    case "type":
      message = `must be ${typeWords(params.type as string | string[])}`;
      break;
    case "propertyNames":
      pointer = `${pointer}${pointerOf([String(params.propertyName)])}`;
      span = document.keySpan(pointer);
      message = "is not a known name here";
      break;
  }
  message = parent.messages?.[error.keyword] ?? message;
  return { span: span ?? document.locate(pointer)?.span, path: pathOf(pointer, document.value), message };
}

/** `string,number,boolean` is how the schema spells "text": call it string. */
function typeWords(types: string | string[]): string {
  const list = Array.isArray(types) ? types : types.split(",");
  const words = list.includes("string") ? list.filter((type) => type !== "number" && type !== "boolean") : list;
  return words.join(" or ");
}

function unknownKeyMessage(key: string, known: readonly string[]): string {
  const close = known.filter((candidate) => editDistance(candidate, key) <= 2);
  const hint = close.length > 0 ? ` (did you mean ${close.map((name) => JSON.stringify(name)).join(" or ")}?)` : "";
  return `unknown key${hint}`;
}

function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, index) => index);
  for (let i = 1; i <= a.length; i++) {
    const current = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] ?? 0) + (a[i - 1] === b[j - 1] ? 0 : 1);
      current.push(Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitution));
    }
    previous = current;
  }
  return previous[b.length] ?? 0;
}

/** ajv's instancePath as document path segments: indexes into lists become numbers. */
function pathOf(pointer: string, value: unknown): PathSegment[] {
  const path: PathSegment[] = [];
  let current = value;
  for (const raw of pointer.split("/").slice(1)) {
    const segment = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    const index = Array.isArray(current) ? Number(segment) : Number.NaN;
    path.push(Number.isInteger(index) ? index : segment);
    current =
      current !== null && typeof current === "object" ? (current as Record<string, unknown>)[segment] : undefined;
  }
  return path;
}

function inDocumentOrder(problems: ConfigProblem[]): ConfigProblem[] {
  const position = (problem: ConfigProblem) => [problem.line ?? Number.MAX_SAFE_INTEGER, problem.column ?? 0];
  return [...problems].sort((a, b) => {
    const [lineA = 0, columnA = 0] = position(a);
    const [lineB = 0, columnB = 0] = position(b);
    return lineA - lineB || columnA - columnB;
  });
}
