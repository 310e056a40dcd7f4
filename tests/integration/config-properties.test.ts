import fc from "fast-check";
import { dump } from "js-yaml";
import { describe, expect, it } from "vitest";
import { checkConfig, parseConfig } from "../../src/adapters/config-file";
import { ConfigError } from "../../src/ports/config-source.port";

// Property tests of the one config parser (boot, `leakagent validate`, hot reload): whatever the file holds,
// the agent gets a config or a ConfigError, never a crash; and a policy survives the trip through the parser.
// fast-check prints the seed and the shrunk input of any failure; FC_SEED replays it.
const SETTINGS = { numRuns: 300, seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined };

/** Parses; anything thrown other than a ConfigError fails the property. */
function parsesOrConfigError(text: string): void {
  try {
    parseConfig(text, "config.yaml");
  } catch (error) {
    if (!(error instanceof ConfigError)) throw error;
    expect(error.problems.length).toBeGreaterThan(0);
  }
  // The validate path checks without throwing at all.
  checkConfig(text, "config.yaml", { strict: true });
}

const YAML_TOKENS = [
  "policies:",
  "api_keys:",
  "proxy_source:",
  "categories:",
  "endpoints:",
  "matches:",
  "config:",
  "type: bundled",
  "path:",
  "- ",
  ": ",
  "\n",
  "\n  ",
  "\n    ",
  "\t",
  "{",
  "}",
  "[",
  "]",
  ",",
  "'",
  '"',
  "\\",
  "!env ",
  "!regex ",
  "!!str ",
  "!!binary ",
  "&a ",
  "*a",
  "<<: *a",
  "? ",
  "|",
  ">-",
  "---",
  "...",
  "# ",
  "%YAML 1.2",
  "~",
  "null",
  "true",
  "0x1F",
  "1e999",
  "-.inf",
  "\u0000",
  "\uFEFF",
  "\u{1F600}",
];

const yamlish = fc
  .array(fc.oneof(fc.constantFrom(...YAML_TOKENS), fc.string({ maxLength: 8 })), { maxLength: 60 })
  .map((parts) => parts.join(""));

const name = fc.oneof(fc.constantFrom("shop", "example", "", " ", "a.b", "ü", "__proto__", "constructor"), fc.string());

/** Documents shaped like configs, with anything at each place. */
const configish = fc.record(
  {
    policies: fc.oneof(fc.dictionary(name, fc.jsonValue({ maxDepth: 4 })), fc.jsonValue({ maxDepth: 2 })),
    api_keys: fc.oneof(
      fc.dictionary(name, fc.oneof(fc.array(fc.oneof(fc.string(), fc.integer(), fc.constant(null))), fc.jsonValue())),
      fc.jsonValue({ maxDepth: 2 }),
    ),
    proxy_source: fc.oneof(
      fc.record(
        { type: fc.constantFrom("bundled", "remote_passthrough", "x"), path: fc.string(), origin: fc.string() },
        {
          requiredKeys: [],
        },
      ),
      fc.jsonValue({ maxDepth: 2 }),
    ),
  },
  { requiredKeys: [] },
);

/** A valid LeakSignal policy: categories of match rules and endpoints configuring them. */
const policy = fc
  .uniqueArray(fc.stringMatching(/^[a-z][a-z0-9_]{0,11}$/), { minLength: 1, maxLength: 4 })
  .chain((categories) =>
    fc.record({
      categories: fc.record(
        Object.fromEntries(
          categories.map((category) => [
            category,
            fc.array(
              fc.oneof(
                fc.record({ regex: fc.string({ minLength: 1, maxLength: 30 }) }),
                fc.record({ raw: fc.string({ minLength: 1, maxLength: 30 }) }),
                fc.record({ internal: fc.constantFrom("routing_number", "credit_card", "int_phone", "sql") }),
              ),
              { minLength: 1, maxLength: 3 },
            ),
          ]),
        ),
      ),
      endpoints: fc.array(
        fc.record({
          matches: fc.constantFrom("**", "*/admin/**", "api.example.com/users/*"),
          config: fc.record(Object.fromEntries(categories.map((category) => [category, fc.constant({})])), {
            requiredKeys: [],
          }),
        }),
        { minLength: 1, maxLength: 3 },
      ),
    }),
  );

function configWith(deployment: string, policyText: string, apiKeys = ""): string {
  const indented = policyText
    .split("\n")
    .map((line) => (line ? `    ${line}` : line))
    .join("\n");
  return `policies:\n  ${JSON.stringify(deployment)}:\n${indented}\n${apiKeys}`;
}

describe("the config parser, on any input", () => {
  it("returns a config or throws a ConfigError for arbitrary text", () => {
    fc.assert(fc.property(fc.string({ unit: "binary", maxLength: 400 }), parsesOrConfigError), SETTINGS);
  });

  it("returns a config or throws a ConfigError for YAML-ish text", () => {
    fc.assert(fc.property(yamlish, parsesOrConfigError), SETTINGS);
  });

  it("returns a config or throws a ConfigError for arbitrary JSON documents", () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (value) => parsesOrConfigError(JSON.stringify(value))),
      SETTINGS,
    );
  });

  it("returns a config or throws a ConfigError for config-shaped documents, in JSON and in YAML", () => {
    fc.assert(
      fc.property(configish, (document) => {
        parsesOrConfigError(JSON.stringify(document));
        parsesOrConfigError(dump(document));
      }),
      SETTINGS,
    );
  });
});

describe("a valid policy, through the parser", () => {
  it("round-trips: parse → policy text → parse gives the same text and id, with or without api keys", () => {
    fc.assert(
      fc.property(
        policy,
        fc.stringMatching(/^[a-z][a-z0-9-]{0,15}$/),
        fc.boolean(),
        fc.string({ minLength: 1, maxLength: 40 }),
        (document, deployment, keyed, key) => {
          const apiKeys = keyed ? `api_keys:\n  ${JSON.stringify(deployment)}: [${JSON.stringify(key)}]\n` : "";
          const first = parseConfig(configWith(deployment, dump(document), apiKeys), "a.yaml").config.deployments;
          const parsed = first.get(deployment);
          expect(parsed).toBeDefined();
          const again = parseConfig(configWith(deployment, parsed?.policyText ?? ""), "b.yaml").config.deployments;
          expect(again.get(deployment)?.policyText).toBe(parsed?.policyText);
          expect(again.get(deployment)?.policyId).toBe(parsed?.policyId);
          // Keys decide who gets the policy, never what it is.
          expect(first.resolve(keyed ? key : deployment)?.name).toBe(deployment);
        },
      ),
      SETTINGS,
    );
  });
});
