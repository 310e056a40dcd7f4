import { afterEach, describe, expect, it } from "vitest";
import { createDeployment } from "../../src/domain/policy/deployment";
import { DeploymentSet } from "../../src/domain/policy/deployment-set";
import { observeTransaction } from "../../src/domain/telemetry/transaction";
import {
  type HealthCheckMsg,
  MatchDataRequest,
  type MatchDataResponse,
  type PingMessage,
} from "../../src/generated/leaksignal";
import type { LeaksignalClient } from "../generated/leaksignal";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { currentTransaction, legacyTransaction } from "../support/transactions";
import { alpha, beta, eventually, type RunningIngestion, startIngestion } from "./ingestion-support";

let running: RunningIngestion | undefined;
let clients: LeaksignalClient[] = [];

async function setup(): Promise<RunningIngestion & { client: LeaksignalClient }> {
  running = await startIngestion();
  const client = leaksignalClient(running.port);
  clients.push(client);
  return { ...running, client };
}

afterEach(async () => {
  for (const client of clients) client.close();
  clients = [];
  running?.registry.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

describe("UpdatePolicy over @grpc/grpc-js", () => {
  it("sends the deployment's policy in both the legacy fields and `policy`, identified by api_key", async () => {
    const { client, registry, telemetry } = await setup();
    const stream = new PolicyStreamClient(client, { apiKey: "alpha" });
    const [first] = await stream.received(1);
    expect(first).toMatchObject({
      legacyPolicyId: alpha.policyId,
      legacyPolicy: alpha.policyText,
      policy: { policyId: alpha.policyId, policy: alpha.policyText },
    });
    expect(registry.waiting("alpha")).toBe(1);
    expect(telemetry.opened).toEqual([{ deployment: "alpha", ip: "127.0.0.1", policyId: alpha.policyId }]);
    stream.cancel();
  });

  it("identifies a 2022-era proxy by deployment_name alone", async () => {
    const { client } = await setup();
    const stream = new PolicyStreamClient(client, { deploymentName: "beta" });
    const [first] = await stream.received(1);
    expect(first?.legacyPolicy).toBe(beta.policyText);
    expect(first?.policy?.policyId).toBe(beta.policyId);
    stream.cancel();
  });

  it("turns an unknown api key away with UNAUTHENTICATED and sends no policy", async () => {
    const { client, telemetry, logger, registry } = await setup();
    const stream = new PolicyStreamClient(client, { apiKey: "not-a-deployment-key", deploymentName: "alpha" });
    const ended = await stream.ended;
    expect(ended.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(ended.details).toContain("unknown deployment");
    expect(stream.responses).toEqual([]);
    // Counted under the deployment it named, never under the refused key.
    expect(telemetry.turnedAway).toEqual([{ deployment: "alpha", ip: "127.0.0.1" }]);
    expect(telemetry.rejected).toEqual(["unknown_deployment"]);
    expect(registry.waiting("alpha")).toBe(0);
    expect(JSON.stringify(logger.lines)).not.toContain("not-a-deployment-key");
  });

  it("pushes a new policy only to streams of deployments that changed", async () => {
    const { client, registry } = await setup();
    const alphaStream = new PolicyStreamClient(client, { apiKey: "alpha" });
    const betaStream = new PolicyStreamClient(client, { apiKey: "beta" });
    await Promise.all([alphaStream.received(1), betaStream.received(1)]);

    const alpha2 = createDeployment("alpha", `${alpha.policyText}# edited\n`);
    registry.replaceDeployments(new DeploymentSet([alpha2, beta]));
    const [, pushed] = await alphaStream.received(2);
    expect(pushed?.policy?.policyId).toBe(alpha2.policyId);
    expect(pushed?.legacyPolicy).toBe(alpha2.policyText);

    // Had beta been sent its unchanged policy, that would be its second message, not this one.
    const beta2 = createDeployment("beta", `${beta.policyText}# edited\n`);
    registry.replaceDeployments(new DeploymentSet([alpha2, beta2]));
    const [, betaPushed] = await betaStream.received(2);
    expect(betaPushed?.policy?.policyId).toBe(beta2.policyId);
    expect(alphaStream.responses).toHaveLength(2);
    alphaStream.cancel();
    betaStream.cancel();
  });

  it("ends the stream with UNAVAILABLE when its deployment is removed", async () => {
    const { client, registry } = await setup();
    const stream = new PolicyStreamClient(client, { apiKey: "beta" });
    await stream.received(1);
    registry.replaceDeployments(new DeploymentSet([alpha]));
    const ended = await stream.ended;
    expect(ended.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(ended.details).toContain("removed");
    expect(registry.waiting("beta")).toBe(0);
  });

  it("stays open after the proxy half-closes", async () => {
    const { client, registry } = await setup();
    const stream = new PolicyStreamClient(client, { apiKey: "alpha" });
    await stream.received(1);
    stream.call.end();
    const alpha2 = createDeployment("alpha", `${alpha.policyText}# after half-close\n`);
    await new Promise((resolve) => setTimeout(resolve, 20));
    registry.replaceDeployments(new DeploymentSet([alpha2, beta]));
    const [, pushed] = await stream.received(2);
    expect(pushed?.policy?.policyId).toBe(alpha2.policyId);
    expect(registry.waiting("alpha")).toBe(1);
  });

  it("ends a stream that half-closes before its first message with INVALID_ARGUMENT", async () => {
    const { client, registry, telemetry } = await setup();
    const call = client.updatePolicy();
    const ended = new Promise<{ code: number; details: string }>((done) => call.on("status", done));
    call.on("error", () => {});
    call.end();
    const { code, details } = await ended;
    expect(code).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(details).toContain("UpdatePolicy needs a first message naming the deployment");
    expect(telemetry.rejected).toEqual(["malformed"]);
    expect(telemetry.opened).toEqual([]);
    expect(registry.waiting("alpha") + registry.waiting("beta")).toBe(0);
    await eventually(() => running?.server.open.streams === 0, "the server stream to close");
  });

  it("forgets a stream the proxy cancels: the waiting count goes back to 0", async () => {
    const { client, registry, telemetry } = await setup();
    const stream = new PolicyStreamClient(client, { apiKey: "alpha" });
    await stream.received(1);
    expect(registry.waiting("alpha")).toBe(1);
    stream.cancel();
    await eventually(() => registry.waiting("alpha") === 0, "the registry to forget the stream");
    expect(telemetry.waiting.get("alpha")).toBe(0);
    await eventually(() => running?.server.open.streams === 0, "the server stream to close");
  });

  it("ends policy streams with UNAVAILABLE on shutdown, then stops without waiting for the drain timeout", async () => {
    const { client, registry, server } = await setup();
    const streams = [
      new PolicyStreamClient(client, { apiKey: "alpha" }),
      new PolicyStreamClient(client, { apiKey: "beta" }),
    ];
    await Promise.all(streams.map((s) => s.received(1)));
    const started = Date.now();
    registry.disconnectAll("shutdown");
    await server.stop();
    const ended = await Promise.all(streams.map((s) => s.ended));
    expect(ended.map((e) => e.code)).toEqual([GrpcStatus.UNAVAILABLE, GrpcStatus.UNAVAILABLE]);
    expect(ended[0]?.details).toContain("shutting down");
    expect(Date.now() - started).toBeLessThan(2_000); // the default drain timeout is 5 s
    expect(server.open).toEqual({ connections: 0, sessions: 0, streams: 0 });
  });
});

describe("unary methods over @grpc/grpc-js", () => {
  it("echoes the Ping timestamp", async () => {
    const { client } = await setup();
    const timestamp = BigInt(Date.now()) * 1_000_000n + 123n;
    const { response, error } = await unary<PingMessage>((cb) => client.ping({ timestamp }, cb));
    expect(error).toBeUndefined();
    expect(response?.timestamp).toBe(timestamp);
  });

  it("answers HealthCheck", async () => {
    const { client } = await setup();
    const { response, error } = await unary<HealthCheckMsg>((cb) => client.healthCheck({}, cb));
    expect(error).toBeUndefined();
    expect(response).toEqual({});
  });

  it("observes MatchData of a known deployment, in both proxy generations", async () => {
    const { client, telemetry } = await setup();
    const current = currentTransaction({ apiKey: "alpha" });
    const legacy = legacyTransaction({ deploymentName: "beta" });
    for (const report of [current, legacy]) {
      const { error } = await unary<MatchDataResponse>((cb) => client.matchData(report, cb));
      expect(error).toBeUndefined();
    }
    // What the server saw went through the wire, so compare with the decoded report.
    const viaWire = (report: MatchDataRequest) => MatchDataRequest.decode(MatchDataRequest.encode(report).finish());
    expect(telemetry.transactions).toEqual([
      observeTransaction("alpha", viaWire(current)),
      observeTransaction("beta", viaWire(legacy)),
    ]);
    expect(telemetry.rejected).toEqual([]);
  });

  it("refuses MatchData of an unknown deployment with UNAUTHENTICATED and observes nothing", async () => {
    const { client, telemetry } = await setup();
    const { error } = await unary<MatchDataResponse>((cb) =>
      client.matchData(currentTransaction({ apiKey: "gamma" }), cb),
    );
    expect(error?.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(error?.details).toContain("unknown deployment");
    expect(telemetry.transactions).toEqual([]);
    expect(telemetry.rejected).toEqual(["unknown_deployment"]);
  });
});
