import { describe, expect, it } from "vitest";
import { checkConfig, parseConfig } from "../../src/adapters/config-file";
import { formatConfigProblem } from "../../src/ports/config-source.port";

const POLICIES = `policies:
  shop:
    categories: {}
  open:
    endpoints: []
  back:
    categories: {}
`;

function errorsOf(text: string): string[] {
  return checkConfig(text, "config.yaml").errors.map(formatConfigProblem);
}

describe("api_keys in the config file", () => {
  it("gives listed deployments their keys and leaves the others on name-as-key", () => {
    const { config } = parseConfig(
      `${POLICIES}api_keys:\n  shop: [sk-shop-1, "sk-shop-2"]\n  back:\n    - "0042"\n`,
      "c",
    );
    const set = config.deployments;
    expect(set.resolve("sk-shop-1")?.name).toBe("shop");
    expect(set.resolve("sk-shop-2")?.name).toBe("shop");
    expect(set.resolve("0042")?.name).toBe("back");
    expect(set.resolve("shop")).toBeUndefined();
    expect(set.resolve("back")).toBeUndefined();
    expect(set.resolve("open")?.name).toBe("open");
  });

  it("treats an absent, empty or null api_keys as name-as-key for every deployment", () => {
    for (const suffix of ["", "api_keys:\n", "api_keys: {}\n"]) {
      const set = parseConfig(POLICIES + suffix, "c").config.deployments;
      expect(set.names().map((name) => set.resolve(name)?.name)).toEqual(set.names());
    }
  });

  it("does not change the policy text or id sent to proxies", () => {
    const without = parseConfig(POLICIES, "c").config.deployments.get("shop");
    const withKeys = parseConfig(`${POLICIES}api_keys:\n  shop: [sk-1]\n`, "c").config.deployments.get("shop");
    expect(withKeys?.policyText).toBe(without?.policyText);
    expect(withKeys?.policyId).toBe(without?.policyId);
  });

  it("reports every problem with its place, never printing a key", () => {
    const text = `${POLICIES}api_keys:
  shop: [sk-secret-1, sk-secret-2]
  back:
    - sk-secret-1
    - open
    - 12345
    - ""
  ghost: [sk-secret-9]
  open: []
`;
    const errors = errorsOf(text);
    expect(errors).toEqual([
      'config.yaml:11:7: api_keys.back[0]: this key is also listed for deployment "shop" (line 9)',
      "config.yaml:13:7: api_keys.back[2]: must be a string (quote keys that YAML would read as numbers)",
      "config.yaml:14:7: api_keys.back[3]: must not be empty",
      "config.yaml:15:3: api_keys.ghost: is not a deployment in policies",
      "config.yaml:16:9: api_keys.open: must list at least one key; remove the entry to let the deployment name be the key",
    ]);
    expect(errors.join("\n")).not.toContain("sk-secret");
  });

  it("refuses a key that is the name of a deployment taking its name as key", () => {
    expect(errorsOf(`${POLICIES}api_keys:\n  shop: [open]\n`)).toEqual([
      'config.yaml:9:10: api_keys.shop[0]: this key is the name of deployment "open", which has no api_keys and so takes its name as key',
    ]);
    // Fine once `open` has keys of its own, and a deployment may list its own name.
    expect(errorsOf(`${POLICIES}api_keys:\n  shop: [open, shop]\n  open: [k]\n`)).toEqual([]);
  });

  it("requires a list of keys per deployment", () => {
    expect(errorsOf(`${POLICIES}api_keys:\n  shop: sk-1\n`)).toEqual(["config.yaml:9:9: api_keys.shop: must be array"]);
    expect(errorsOf(`${POLICIES}api_keys: [sk-1]\n`)).toEqual(["config.yaml:8:11: api_keys: must be object or null"]);
  });
});
