import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { claimedDeployment, createDeployment, policyIdOf } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";

describe("policy identity", () => {
  it("is the leading 64 bits of the SHA-256 of the policy text", () => {
    const text = "categories: {}\n";
    const expected = createHash("sha256").update(text).digest("hex").slice(0, 16);
    expect(policyIdOf(text)).toBe(expected);
    expect(createDeployment("a", text).policyId).toBe(expected);
  });

  it("is the same for the same text and differs when the text changes", () => {
    expect(policyIdOf("a: 1\n")).toBe(policyIdOf("a: 1\n"));
    expect(policyIdOf("a: 1\n")).not.toBe(policyIdOf("a: 2\n"));
  });
});

describe("claimed deployment", () => {
  it("prefers api_key, as current proxies send only that", () => {
    expect(claimedDeployment({ apiKey: "prod", deploymentName: "" })).toBe("prod");
    expect(claimedDeployment({ apiKey: "prod", deploymentName: "other" })).toBe("prod");
  });

  it("falls back to deployment_name when api_key is absent or empty (2022 proxies)", () => {
    expect(claimedDeployment({ deploymentName: "legacy" })).toBe("legacy");
    expect(claimedDeployment({ apiKey: "", deploymentName: "legacy" })).toBe("legacy");
  });
});

describe("DeploymentSet", () => {
  const a1 = createDeployment("a", "x: 1\n");
  const a2 = createDeployment("a", "x: 2\n");
  const b = createDeployment("b", "y: 1\n");
  const c = createDeployment("c", "z: 1\n");

  it("looks deployments up by name", () => {
    const set = new DeploymentSet([a1, b]);
    expect(set.get("a")).toBe(a1);
    expect(set.get("nope")).toBeUndefined();
    expect(set.size).toBe(2);
    expect(set.names().sort()).toEqual(["a", "b"]);
  });

  it("reports added, changed and removed deployments, and nothing for unchanged ones", () => {
    const changes = new DeploymentSet([a1, b]).changesTo(new DeploymentSet([a2, createDeployment("b", "y: 1\n"), c]));
    expect(changes.added).toEqual([c]);
    expect(changes.changed).toEqual([a2]);
    expect(changes.removed).toEqual([]);
    const shrink = new DeploymentSet([a1, b]).changesTo(new DeploymentSet([a1]));
    expect(shrink).toEqual({ added: [], changed: [], removed: [b] });
  });
});
