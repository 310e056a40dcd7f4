import { describe, expect, it } from "vitest";
import { createDeployment, type Deployment } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";
import { type PolicyStream, PolicyStreamLimitError, ProxyRegistry } from "../../src/domain/proxies/proxy-registry";
import { RecordingTelemetry } from "../support/recording-telemetry";

const prod = createDeployment("prod", "categories: {}\n");
const staging = createDeployment("staging", "endpoints: []\n");

function stream(): PolicyStream & { received: Deployment[] } {
  const received: Deployment[] = [];
  return { received, send: (d) => received.push(d), end: () => {} };
}

function setup(maxStreams: number, maxStreamsPerDeployment: number) {
  const telemetry = new RecordingTelemetry();
  const registry = new ProxyRegistry(telemetry, { maxStreams, maxStreamsPerDeployment });
  registry.replaceDeployments(new DeploymentSet([prod, staging]));
  const connect = (name: string) => registry.connect({ apiKey: name, deploymentName: "" }, "10.0.0.1", stream());
  return { telemetry, registry, connect };
}

describe("ProxyRegistry limits", () => {
  it("refuses a deployment's stream past its limit, sends it nothing, and leaves the count as it was", () => {
    const { registry, telemetry, connect } = setup(10, 2);
    connect("prod");
    connect("prod");
    const refused = stream();
    expect(() => registry.connect({ apiKey: "prod", deploymentName: "" }, "10.0.0.2", refused)).toThrow(
      new PolicyStreamLimitError(2, "deployment"),
    );
    expect(refused.received).toEqual([]);
    expect(registry.waiting("prod")).toBe(2);
    expect(telemetry.waiting.get("prod")).toBe(2);
    expect(telemetry.opened).toHaveLength(2);
    // Another deployment is not held back by it.
    connect("staging");
    expect(registry.waitingTotal).toBe(3);
  });

  it("refuses any stream past the total, and takes one again once a place is free", () => {
    const { registry, connect } = setup(3, 2);
    const unregister = connect("prod");
    connect("prod");
    connect("staging");
    expect(() => connect("staging")).toThrow(new PolicyStreamLimitError(3, "agent"));
    unregister();
    unregister();
    expect(registry.waitingTotal).toBe(2);
    connect("staging");
    expect([registry.waiting("prod"), registry.waiting("staging"), registry.waitingTotal]).toEqual([1, 2, 3]);
  });

  it("frees places when streams end by reload or shutdown", () => {
    const { registry, connect } = setup(2, 2);
    connect("prod");
    connect("staging");
    registry.replaceDeployments(new DeploymentSet([prod]));
    expect(registry.waitingTotal).toBe(1);
    connect("prod");
    registry.disconnectAll("shutdown");
    expect(registry.waitingTotal).toBe(0);
    connect("prod");
    connect("prod");
    expect(registry.waitingTotal).toBe(2);
  });
});
