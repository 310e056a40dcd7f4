import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { validateConfigFile } from "../../src/adapters/config-file";

const FIXTURES = join(__dirname, "../fixtures/config");

describe("validateConfigFile (leakagent validate)", () => {
  it.each(["good/shop-policy.yaml", "good/tagged-policies.yaml"])(
    "passes %s with no output, even when strict",
    async (name) => {
      expect(await validateConfigFile(join(FIXTURES, name), { strict: true })).toEqual({ ok: true, lines: [] });
    },
  );

  // What a user reads for each bad fixture, exactly.
  const badFixtures: Array<[string, (file: string) => string[]]> = [
    [
      "syntax-error.yaml",
      (file) => [`${file}:6:8: policies.example.categories.email: bad indentation of a mapping entry`],
    ],
    ["duplicate-key.yaml", (file) => [`${file}:6:3: policies.shop: duplicate key "shop", first defined at line 2`]],
    [
      "empty-deployment-name.yaml",
      (file) => [
        `${file}:2:3: policies[""]: a deployment name must not be empty or blank`,
        `${file}:3:3: policies["   "]: a deployment name must not be empty or blank`,
      ],
    ],
    [
      "schema-errors.yaml",
      (file) => [
        `${file}:5:18: policies.example.categories.email[0].regex: must be string`,
        `${file}:6:11: policies.example.categories.email[1]: must have exactly one key`,
        `${file}:10:14: policies.example.categories.routing.tag: cannot be combined with Matchers; use matchers with tag`,
        `${file}:13:17: policies.example.endpoints[0].config: must be object`,
        `${file}:15:23: policies.example.endpoints[1].report_style: must be one of: raw, partial_sha256, sha256, none`,
        `${file}:16:22: policies.example.endpoints[1].report_bits: must be <= 256`,
        `${file}:20:15: policies.example.endpoints[1].config.email.action.redact: must be string`,
        `${file}:21:21: policies.example.endpoints[1].config.email.search: must be one of: request_body, downstream, request_header, upstream, response_body, response_header, all_body, all_header, all`,
        `${file}:24:11: proxy_source.origin: must be an http:// or https:// URL, optionally with a path, without query or fragment`,
      ],
    ],
  ];

  it.each(badFixtures)("fails %s with every problem located", async (name, expected) => {
    const file = join(FIXTURES, "bad", name);
    expect(await validateConfigFile(file)).toEqual({ ok: false, lines: expected(file) });
  });

  it("passes unknown keys with warnings, and fails them when strict", async () => {
    const file = join(FIXTURES, "bad", "unknown-keys.yaml");
    const problems = [
      [`${file}:3:5: policies.example.catgories: `, 'unknown key (did you mean "categories"?)'],
      [`${file}:8:9: policies.example.endpoints[0].sample_rate: `, "unknown key"],
      [`${file}:9:1: proxy_sources: `, 'unknown key (did you mean "proxy_source"?)'],
    ];
    expect(await validateConfigFile(file)).toEqual({
      ok: true,
      lines: problems.map(([where, message]) => `${where}warning: ${message}`),
    });
    expect(await validateConfigFile(file, { strict: true })).toEqual({
      ok: false,
      lines: problems.map(([where, message]) => `${where}${message}`),
    });
  });

  it("fails a missing file, naming it", async () => {
    const file = join(FIXTURES, "bad", "does-not-exist.yaml");
    expect(await validateConfigFile(file)).toEqual({
      ok: false,
      lines: [`${file}: cannot read the config file: no such file`],
    });
  });
});
