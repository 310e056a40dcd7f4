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

function setup(...deployments: Deployment[]) {
  const telemetry = new RecordingTelemetry();
  const registry = new ProxyRegistry(telemetry);
  registry.replaceDeployments(new DeploymentSet(deployments));
  return { telemetry, registry };
}

describe("ProxyRegistry", () => {
  const prod = createDeployment("prod", "categories: {}\n");
  const staging = createDeployment("staging", "endpoints: []\n");

  it("sends the current policy when a proxy connects and counts the stream", () => {
    const { registry, telemetry } = setup(prod, staging);
    const stream = new FakeStream();
    registry.connect({ apiKey: "prod", deploymentName: "" }, "10.0.0.1", stream);
    expect(stream.received).toEqual([prod]);
    expect(telemetry.opened).toEqual([{ deployment: "prod", ip: "10.0.0.1", policyId: prod.policyId }]);
    expect(telemetry.sent).toEqual([{ deployment: "prod", policyId: prod.policyId }]);
    expect(registry.waiting("prod")).toBe(1);
    expect(telemetry.waiting.get("prod")).toBe(1);
  });

  it("turns away unknown deployments without sending anything", () => {
    const { registry, telemetry } = setup(prod);
    const stream = new FakeStream();
    expect(() => registry.connect({ deploymentName: "intruder" }, "10.0.0.9", stream)).toThrow(UnknownDeploymentError);
    expect(stream.received).toEqual([]);
    // A name no deployment has may be a secret key: counted as "unknown".
    expect(telemetry.turnedAway).toEqual([{ deployment: "unknown", ip: "10.0.0.9" }]);
    expect(registry.waiting("intruder")).toBe(0);
    expect(telemetry.sent).toEqual([]);
  });

  it("forgets a stream once, however often disconnect is called", () => {
    const { registry, telemetry } = setup(prod);
    const first = registry.connect({ apiKey: "prod", deploymentName: "" }, "a", new FakeStream());
    registry.connect({ apiKey: "prod", deploymentName: "" }, "b", new FakeStream());
    expect(registry.waiting("prod")).toBe(2);
    first();
    first();
    expect(registry.waiting("prod")).toBe(1);
    expect(telemetry.waiting.get("prod")).toBe(1);
  });

  it("pushes a changed policy to that deployment's streams only", () => {
    const { registry } = setup(prod, staging);
    const prodStream = new FakeStream();
    const stagingStream = new FakeStream();
    registry.connect({ apiKey: "prod", deploymentName: "" }, "a", prodStream);
    registry.connect({ apiKey: "staging", deploymentName: "" }, "b", stagingStream);
    const prod2 = createDeployment("prod", "categories: {a: []}\n");
    const changes = registry.replaceDeployments(
      new DeploymentSet([prod2, createDeployment("staging", "endpoints: []\n")]),
    );
    expect(changes.changed).toEqual([prod2]);
    expect(prodStream.received).toEqual([prod, prod2]);
    expect(stagingStream.received).toEqual([staging]);
  });

  it("ends the streams of removed deployments and resolves them no more", () => {
    const { registry, telemetry } = setup(prod, staging);
    const stream = new FakeStream();
    const disconnect = registry.connect({ apiKey: "staging", deploymentName: "" }, "a", stream);
    registry.replaceDeployments(new DeploymentSet([prod]));
    expect(stream.ended).toBe("deployment_removed");
    expect(registry.waiting("staging")).toBe(0);
    expect(telemetry.waiting.get("staging")).toBe(0);
    expect(registry.resolve({ apiKey: "staging", deploymentName: "" })).toBeUndefined();
    disconnect();
    expect(telemetry.waiting.get("staging")).toBe(0);
  });

  it("ends every stream on shutdown", () => {
    const { registry } = setup(prod, staging);
    const streams = [new FakeStream(), new FakeStream(), new FakeStream()];
    registry.connect({ apiKey: "prod", deploymentName: "" }, "a", streams[0] as FakeStream);
    registry.connect({ apiKey: "prod", deploymentName: "" }, "b", streams[1] as FakeStream);
    registry.connect({ deploymentName: "staging" }, "c", streams[2] as FakeStream);
    registry.disconnectAll("shutdown");
    expect(streams.map((s) => s.ended)).toEqual(["shutdown", "shutdown", "shutdown"]);
    expect(registry.waiting("prod") + registry.waiting("staging")).toBe(0);
  });
});
