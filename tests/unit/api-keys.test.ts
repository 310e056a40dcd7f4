import { describe, expect, it } from "vitest";
import { createDeployment, type Deployment } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";
import {
  type PolicyStream,
  type PolicyStreamEnd,
  ProxyRegistry,
  UnknownDeploymentError,
} from "../../src/domain/proxies/proxy-registry";
import { RecordingTelemetry } from "../support/recording-telemetry";

class FakeStream implements PolicyStream {
  readonly received: Deployment[] = [];
  ended: PolicyStreamEnd | undefined;
  send(deployment: Deployment): void {
    this.received.push(deployment);
  }
  end(reason: PolicyStreamEnd): void {
    this.ended = reason;
  }
}

const SHOP_KEY = "sk-shop-7f3a9c";
const SHOP_KEY_2 = "sk-shop-rotated-11b2";
const shop = (keys: string[] = [SHOP_KEY], text = "categories: {}\n") => createDeployment("shop", text, keys);
const open = createDeployment("open", "endpoints: []\n");

function setup(...deployments: Deployment[]) {
  const telemetry = new RecordingTelemetry();
  const registry = new ProxyRegistry(telemetry);
  registry.replaceDeployments(new DeploymentSet(deployments));
  return { telemetry, registry };
}

describe("deployment credentials", () => {
  it("opens a deployment with api keys by any of its keys, not by its name", () => {
    const set = new DeploymentSet([shop([SHOP_KEY, SHOP_KEY_2]), open]);
    expect(set.resolve(SHOP_KEY)?.name).toBe("shop");
    expect(set.resolve(SHOP_KEY_2)?.name).toBe("shop");
    expect(set.resolve("shop")).toBeUndefined();
    expect(set.resolve(`${SHOP_KEY}x`)).toBeUndefined();
    expect(set.resolve(SHOP_KEY.slice(0, -1))).toBeUndefined();
  });

  it("opens a deployment without keys by its name, as the original agent does", () => {
    const set = new DeploymentSet([shop(), open]);
    expect(set.resolve("open")?.name).toBe("open");
    expect(set.resolve("")).toBeUndefined();
    expect(set.resolve("OPEN")).toBeUndefined();
  });

  it("keeps only digests of the keys", () => {
    expect(JSON.stringify(shop())).not.toContain(SHOP_KEY);
  });

  it("refuses a set where two deployments accept the same credential", () => {
    expect(() => new DeploymentSet([shop(["open"]), open])).toThrow(/"shop" and "open"|"open" and "shop"/);
    expect(() => new DeploymentSet([shop([SHOP_KEY]), createDeployment("other", "", [SHOP_KEY])])).toThrow(
      /accept the same credential/,
    );
  });
});

describe("ProxyRegistry with api keys", () => {
  it("connects a proxy presenting a key to its deployment, counted under the deployment name", () => {
    const { registry, telemetry } = setup(shop(), open);
    const stream = new FakeStream();
    registry.connect({ apiKey: SHOP_KEY, deploymentName: "" }, "10.0.0.1", stream);
    expect(stream.received.map((d) => d.name)).toEqual(["shop"]);
    expect(registry.waiting("shop")).toBe(1);
    expect(telemetry.waiting.get("shop")).toBe(1);
    expect(telemetry.opened).toEqual([{ deployment: "shop", ip: "10.0.0.1", policyId: shop().policyId }]);
    expect(registry.resolve({ apiKey: SHOP_KEY, deploymentName: "" })?.name).toBe("shop");
  });

  it("never labels a refused proxy with the credential it presented", () => {
    const { registry, telemetry } = setup(shop(), open);
    const refuse = (credentials: { apiKey?: string; deploymentName: string }) =>
      expect(() => registry.connect(credentials, "10.0.0.9", new FakeStream())).toThrow(UnknownDeploymentError);
    refuse({ apiKey: "sk-wrong-key", deploymentName: "" });
    refuse({ apiKey: "shop", deploymentName: "" }); // the name of a deployment that wants a key
    refuse({ apiKey: "sk-wrong-key", deploymentName: "shop" });
    refuse({ deploymentName: "" });
    expect(telemetry.turnedAway.map((t) => t.deployment)).toEqual(["unknown", "shop", "shop", "unknown"]);
    expect(registry.waiting("shop")).toBe(0);
  });

  it("does not echo the refused credential in the error", () => {
    const { registry } = setup(shop());
    expect(() => registry.connect({ apiKey: "sk-wrong-key", deploymentName: "" }, "ip", new FakeStream())).toThrow(
      /^unknown deployment or api key$/,
    );
  });

  it("on reload ends the streams whose key was removed, keeps the others and sends them the new policy", () => {
    const { registry, telemetry } = setup(shop([SHOP_KEY, SHOP_KEY_2]), open);
    const revoked = new FakeStream();
    const kept = new FakeStream();
    registry.connect({ apiKey: SHOP_KEY, deploymentName: "" }, "a", revoked);
    registry.connect({ apiKey: SHOP_KEY_2, deploymentName: "" }, "b", kept);
    const next = shop([SHOP_KEY_2], "categories: {}\nendpoints: []\n");
    registry.replaceDeployments(new DeploymentSet([next, open]));
    expect(revoked.ended).toBe("key_revoked");
    expect(revoked.received).toHaveLength(1);
    expect(kept.ended).toBeUndefined();
    expect(kept.received.map((d) => d.policyId)).toEqual([shop().policyId, next.policyId]);
    expect(registry.waiting("shop")).toBe(1);
    expect(telemetry.waiting.get("shop")).toBe(1);
  });

  it("on reload ends streams that connected by name once the deployment gets keys, and those whose key moved", () => {
    const { registry, telemetry } = setup(open, shop());
    const byName = new FakeStream();
    const moved = new FakeStream();
    registry.connect({ apiKey: "open", deploymentName: "" }, "a", byName);
    registry.connect({ apiKey: SHOP_KEY, deploymentName: "" }, "b", moved);
    // `open` now wants a key, and the shop key now opens `open`.
    registry.replaceDeployments(
      new DeploymentSet([createDeployment("open", open.policyText, [SHOP_KEY]), shop(["k2"])]),
    );
    expect(byName.ended).toBe("key_revoked");
    expect(moved.ended).toBe("key_revoked");
    expect(registry.waiting("open")).toBe(0);
    expect(registry.waiting("shop")).toBe(0);
    expect(telemetry.waiting.get("open")).toBe(0);
    expect(telemetry.waiting.get("shop")).toBe(0);
    // Reconnecting with the moved key lands on its new deployment.
    const again = new FakeStream();
    registry.connect({ apiKey: SHOP_KEY, deploymentName: "" }, "b", again);
    expect(again.received.map((d) => d.name)).toEqual(["open"]);
  });

  it("leaves streams alone when a reload changes nothing about their credential", () => {
    const { registry } = setup(shop(), open);
    const stream = new FakeStream();
    registry.connect({ apiKey: SHOP_KEY, deploymentName: "" }, "a", stream);
    registry.replaceDeployments(new DeploymentSet([shop(), open]));
    expect(stream.ended).toBeUndefined();
    expect(stream.received).toHaveLength(1);
    expect(registry.waiting("shop")).toBe(1);
  });
});
