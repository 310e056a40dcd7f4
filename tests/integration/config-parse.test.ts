import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import {
  EMBEDDED_DEFAULT_CONFIG,
  EMBEDDED_DEFAULT_SOURCE,
  parseConfig,
  parseEmbeddedDefaultConfig,
} from "../../src/adapters/config-file";
import { readYamlDocument } from "../../src/adapters/config-file/yaml-document";
import { ConfigError, type ConfigProblem } from "../../src/ports/config-source.port";
import { DEFAULT_TELEMETRY_SETTINGS } from "../../src/ports/telemetry-sink.port";

const FIXTURES = join(__dirname, "../fixtures/config");
const fixture = (name: string) => readFileSync(join(FIXTURES, name), "utf8");

/** The problems parseConfig throws, or fails the test. */
function problemsOf(text: string, options: { strict?: boolean } = {}): ConfigProblem[] {
  try {
    parseConfig(text, "config.yaml", options);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return [...(error as ConfigError).problems];
  }
  throw new Error("expected a ConfigError");
}

/** Wraps a policy document as the config of one deployment. */
function configWith(name: string, policyText: string): string {
  const indented = policyText
    .split("\n")
    .map((line) => (line ? `    ${line}` : line))
    .join("\n");
  return `policies:\n  ${name}:\n${indented}`;
}

/** The plain value of a YAML text, custom tags read as `{ tag: value }`. */
function plain(text: string): unknown {
  const { document, problems } = readYamlDocument(text);
  expect(problems).toEqual([]);
  return document?.value;
}

describe("parseConfig", () => {
  it("accepts the embedded default (the LeakAgent documentation example) without warnings", () => {
    const { config, warnings } = parseEmbeddedDefaultConfig();
    expect(warnings).toEqual([]);
    expect(config.source).toBe(EMBEDDED_DEFAULT_SOURCE);
    expect(config.deployments.names()).toEqual(["example"]);
    const policy = config.deployments.get("example")?.policyText ?? "";
    // The Rust-only regex syntax reaches the proxy untouched.
    expect(policy).toContain("(?-u:\\\\b)");
    expect(policy).toContain("Matchers:");
    expect(config.proxySource).toBeUndefined();
  });

  it("accepts a policy using every section of the format without warnings", () => {
    const { config, warnings } = parseConfig(fixture("good/shop-policy.yaml"), "shop-policy.yaml", { strict: true });
    expect(warnings).toEqual([]);
    expect(config.deployments.names()).toEqual(["shop"]);
  });

  it("accepts both category forms: a list of match rules, and matchers with a tag or Matchers", () => {
    const text = `policies:
  example:
    categories:
      as_list:
        - regex: "\\\\d{9}"
        - except: "000000000"
      as_matchers:
        matchers:
          - regex: "\\\\d{9}"
        tag: routing
      as_single_matcher:
        matchers: !internal routing_number
      as_capital_matchers:
        Matchers:
          - and:
              - internal: routing_number
`;
    const { config, warnings } = parseConfig(text, "config.yaml", { strict: true });
    expect(warnings).toEqual([]);
    const policy = plain(config.deployments.get("example")?.policyText ?? "") as { categories: object };
    expect(Object.keys(policy.categories)).toEqual([
      "as_list",
      "as_matchers",
      "as_single_matcher",
      "as_capital_matchers",
    ]);
    expect(policy.categories).toMatchObject({ as_single_matcher: { matchers: { internal: "routing_number" } } });
  });

  it("keeps every custom tag when serialising a policy, and serialises deterministically", () => {
    const text = fixture("good/tagged-policies.yaml");
    const first = parseConfig(text, "tagged.yaml").config.deployments.get("storefront");
    const again = parseConfig(text, "tagged.yaml").config.deployments.get("storefront");
    expect(first?.policyText).toBeDefined();
    expect(again).toEqual(first);

    const policyText = first?.policyText ?? "";
    const tagsIn = (yaml: string) => [...yaml.matchAll(/(?<=\s)![a-z_]+/g)].map((match) => match[0]).sort();
    const storefrontSource = text.slice(text.indexOf("storefront:"), text.indexOf("backoffice:"));
    expect(tagsIn(policyText)).toEqual(tagsIn(storefrontSource));
    expect(tagsIn(policyText).length).toBeGreaterThanOrEqual(10);

    // parse → serialise → parse: the same structure, the same text, the same policy id.
    const reparsed = parseConfig(configWith("storefront", policyText), "reparsed.yaml").config.deployments.get(
      "storefront",
    );
    expect(reparsed?.policyText).toBe(policyText);
    expect(reparsed?.policyId).toBe(first?.policyId);
    const sourcePolicy = (plain(text) as { policies: Record<string, unknown> }).policies.storefront;
    expect(plain(policyText)).toEqual(sourcePolicy);
  });

  it("gives a policy the same id when only comments or indentation change", () => {
    const base = parseConfig(EMBEDDED_DEFAULT_CONFIG, "a.yaml").config.deployments.get("example");
    const commented = EMBEDDED_DEFAULT_CONFIG.replace("    endpoints:", "    # where to look\n    endpoints:").replace(
      "          - and:\n              - internal",
      "          - and:\n            - internal",
    );
    expect(commented).not.toBe(EMBEDDED_DEFAULT_CONFIG);
    expect(parseConfig(commented, "b.yaml").config.deployments.get("example")?.policyId).toBe(base?.policyId);
  });

  it("locates a YAML syntax error by line, column and the entry being read", () => {
    const text = fixture("bad/syntax-error.yaml");
    const badLine = text.split("\n").findIndex((line) => line.includes("- except")) + 1;
    expect(problemsOf(text)).toEqual([
      {
        file: "config.yaml",
        line: badLine,
        column: (text.split("\n")[badLine - 1]?.indexOf("-") ?? -1) + 1,
        path: "policies.example.categories.email",
        message: "bad indentation of a mapping entry",
      },
    ]);
  });

  it("reports a duplicate key where it is repeated", () => {
    const problems = problemsOf("policies:\n  a: {}\n  b: {}\n  a:\n    report_style: raw\n");
    expect(problems).toEqual([
      {
        file: "config.yaml",
        line: 4,
        column: 3,
        path: "policies.a",
        message: 'duplicate key "a", first defined at line 2',
      },
    ]);
  });

  it("reports a schema error deep in a policy at the offending node", () => {
    const text = "policies:\n  example:\n    endpoints:\n      - matches: '**'\n        config:\n          - email\n";
    expect(problemsOf(text)).toEqual([
      {
        file: "config.yaml",
        line: 6,
        column: 11,
        path: "policies.example.endpoints[0].config",
        message: "must be object",
      },
    ]);
  });

  it("reports every problem at once, errors in document order", () => {
    const text = "policies:\n  a:\n    report_style: loud\n  b:\n    endpoints: {}\nproxy_source:\n  type: ftp\n";
    const problems = problemsOf(text);
    expect(problems.map((problem) => `${problem.line}:${problem.column} ${problem.path}`)).toEqual([
      "3:19 policies.a.report_style",
      "5:16 policies.b.endpoints",
      "7:9 proxy_source.type",
    ]);
  });

  it("rejects an empty or blank deployment name", () => {
    const problems = problemsOf("policies:\n  '': {}\n  ' \t':\n    report_style: raw\n  fine: {}\n");
    expect(problems).toEqual([
      {
        file: "config.yaml",
        line: 2,
        column: 3,
        path: 'policies[""]',
        message: "a deployment name must not be empty or blank",
      },
      {
        file: "config.yaml",
        line: 3,
        column: 3,
        path: 'policies[" \\t"]',
        message: "a deployment name must not be empty or blank",
      },
    ]);
  });

  it("warns about an unknown key, and rejects it when strict", () => {
    const text = "policies:\n  example:\n    report_style: raw\n    future_feature: true\n";
    const expected = {
      file: "config.yaml",
      line: 4,
      column: 5,
      path: "policies.example.future_feature",
      message: "unknown key",
    };
    const { config, warnings } = parseConfig(text, "config.yaml");
    expect(warnings).toEqual([expected]);
    // The key still reaches the proxy: a newer proxy may understand it.
    expect(config.deployments.get("example")?.policyText).toContain("future_feature: true");
    expect(problemsOf(text, { strict: true })).toEqual([expected]);
  });

  it("never compiles policy regexes as JavaScript", () => {
    // Valid Rust regex syntax that JavaScript's RegExp rejects.
    const rust = ["(?-u:\\\\b)\\\\d+", "(?i)secret", "(?P<year>\\\\d{4})"];
    for (const regex of rust) expect(() => new RegExp(JSON.parse(`"${regex}"`))).toThrow();
    const text = `policies:\n  a:\n    categories:\n      c:\n${rust.map((regex) => `        - regex: "${regex}"\n`).join("")}`;
    expect(parseConfig(text, "config.yaml", { strict: true }).warnings).toEqual([]);
  });
});

describe("proxy_source and LS_BUNDLE_DIR", () => {
  const policies = "policies:\n  a: {}\n";

  it("defaults to bundled from LS_BUNDLE_DIR when proxy_source is absent, null or empty", () => {
    for (const tail of ["", "proxy_source:\n", "proxy_source: {}\n"]) {
      const { config } = parseConfig(policies + tail, "config.yaml", { bundleDir: "/bundle" });
      expect(config.proxySource).toEqual({ type: "bundled", path: "/bundle" });
    }
  });

  it("ignores an empty LS_BUNDLE_DIR and a set proxy_source wins over it", () => {
    expect(parseConfig(policies, "config.yaml", { bundleDir: "" }).config.proxySource).toBeUndefined();
    const origin = "https://downloads.example.com/leaksignal";
    const remote = `${policies}proxy_source:\n  type: remote_passthrough\n  origin: ${origin}\n`;
    expect(parseConfig(remote, "config.yaml", { bundleDir: "/bundle" }).config.proxySource).toEqual({
      type: "remote_passthrough",
      origin,
    });
  });

  it("rejects a remote origin that is not an http(s) URL and a bundled source without a path", () => {
    const text = `${policies}proxy_source:\n  type: remote_passthrough\n  origin: ftp://example.com\n`;
    expect(problemsOf(text).map((problem) => problem.path)).toEqual(["proxy_source.origin"]);
    const bundled = `${policies}proxy_source:\n  type: bundled\n`;
    expect(problemsOf(bundled)).toEqual([
      { file: "config.yaml", line: 4, column: 3, path: "proxy_source", message: 'missing required key "path"' },
    ]);
  });
});

describe("metrics", () => {
  const policies = "policies:\n  a: {}\n";

  it("defaults when absent, null or empty", () => {
    for (const tail of ["", "metrics:\n", "metrics: {}\n"]) {
      expect(parseConfig(policies + tail, "config.yaml").config.telemetry).toEqual(DEFAULT_TELEMETRY_SETTINGS);
    }
  });

  it("reads every setting, durations in any unit", () => {
    const text = `${policies}metrics:
  max_series_per_metric: 2500
  series_ttl: 90s
  labels:
    ip: drop
    token: hash
  label_hash_key: "0123456789abcdef-key"
`;
    expect(parseConfig(text, "config.yaml").config.telemetry).toEqual({
      maxSeriesPerMetric: 2500,
      seriesTtlMs: 90_000,
      ipLabel: "drop",
      tokenLabel: "hash",
      labelHashKey: "0123456789abcdef-key",
    });
    const ttl = (value: string) =>
      parseConfig(`${policies}metrics:\n  series_ttl: ${value}\n`, "config.yaml").config.telemetry.seriesTtlMs;
    expect([ttl("250ms"), ttl("10m"), ttl("2h"), ttl("0s")]).toEqual([250, 600_000, 7_200_000, 0]);
  });

  it("locates each bad value", () => {
    const text = `${policies}metrics:
  max_series_per_metric: 0
  series_ttl: 10 minutes
  labels:
    token: scramble
`;
    expect(problemsOf(text).map(({ line, column, path, message }) => ({ line, column, path, message }))).toEqual([
      { line: 4, column: 26, path: "metrics.max_series_per_metric", message: "must be at least 1" },
      {
        line: 5,
        column: 15,
        path: "metrics.series_ttl",
        message: "must be a duration such as 10m, 90s or 1h, or 0s to keep series for the agent's lifetime",
      },
      { line: 7, column: 12, path: "metrics.labels.token", message: "must be one of: raw, hash, drop" },
    ]);
  });

  it("needs a key of at least 16 characters when a label is hashed", () => {
    const missing = `${policies}metrics:\n  labels:\n    ip: hash\n`;
    expect(problemsOf(missing)).toEqual([
      {
        file: "config.yaml",
        line: 4,
        column: 3,
        path: "metrics",
        message: 'missing required key "label_hash_key": a label in hash mode needs a key',
      },
    ]);
    const short = `${policies}metrics:\n  labels:\n    token: hash\n  label_hash_key: short\n`;
    expect(problemsOf(short).map((problem) => [problem.path, problem.message])).toEqual([
      ["metrics.label_hash_key", "must be at least 16 characters long"],
    ]);
    // Without a hashed label, the key is not needed.
    expect(() => parseConfig(`${policies}metrics:\n  labels:\n    ip: drop\n`, "config.yaml")).not.toThrow();
  });
});
