import { type ClientHttp2Session, constants } from "node:http2";
import { gzipSync } from "node:zlib";
import { afterEach, describe, expect, it } from "vitest";
import { encodeGrpcMessage, parseGrpcTimeout } from "../../src/adapters/ingestion/grpc-call";
import { HealthCheckMsg, MatchDataRequest, PingMessage, UpdatePolicyRequest } from "../../src/generated/leaksignal";
import { GrpcStatus } from "../support/grpc-client";
import { currentTransaction } from "../support/transactions";
import {
  envoyHeaders,
  eventually,
  grpcFrame,
  grpcMessages,
  h2Connect,
  type RunningIngestion,
  rawRequest,
  startIngestion,
} from "./ingestion-support";

let running: RunningIngestion | undefined;
let sessions: ClientHttp2Session[] = [];

async function setup(options: Parameters<typeof startIngestion>[0] = {}) {
  running = await startIngestion(options);
  const session = await h2Connect(running.port);
  sessions.push(session);
  return { ...running, session };
}

afterEach(async () => {
  for (const session of sessions) session.destroy();
  sessions = [];
  running?.registry.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

const ping = (timestamp: bigint) => grpcFrame(PingMessage.encode({ timestamp }).finish());

async function expectPingWorks(session: ClientHttp2Session): Promise<void> {
  const answer = await rawRequest(session, envoyHeaders("Ping", { "grpc-timeout": "0m" }), [ping(77n)]);
  expect(answer.status).toBe(GrpcStatus.OK);
  expect(grpcMessages(answer.body).map((m) => PingMessage.decode(m).timestamp)).toEqual([77n]);
}

describe("gRPC framing on the ingestion port (raw HTTP/2, as Envoy sends it)", () => {
  it("answers a unary call with 200, application/grpc, exactly one message and a grpc-status trailer", async () => {
    const { session } = await setup();
    const answer = await rawRequest(session, envoyHeaders("Ping", { "grpc-timeout": "0m" }), [ping(1234n)]);
    expect(answer.headers[":status"]).toBe(200);
    expect(answer.headers["content-type"]).toBe("application/grpc");
    expect(answer.headers["grpc-status"]).toBeUndefined();
    expect(answer.trailers?.["grpc-status"]).toBe("0");
    expect(grpcMessages(answer.body).map((m) => PingMessage.decode(m).timestamp)).toEqual([1234n]);
  });

  it("treats grpc-timeout 0m (and other zero values) as no deadline", async () => {
    const { session, telemetry } = await setup();
    for (const timeout of ["0m", "0S", "0n"]) {
      // The message comes well after the headers, as it may through Envoy.
      const answer = await rawRequest(
        session,
        envoyHeaders("HealthCheck", { "grpc-timeout": timeout }),
        [grpcFrame(HealthCheckMsg.encode({}).finish())],
        30,
      );
      expect(answer.status).toBe(GrpcStatus.OK);
      expect(grpcMessages(answer.body)).toHaveLength(1);
    }
    expect(telemetry.rejected).toEqual([]);
  });

  it("reassembles messages split across DATA frames", async () => {
    const { session, telemetry } = await setup();
    const frame = grpcFrame(MatchDataRequest.encode(currentTransaction({ apiKey: "alpha" })).finish());
    // 3 bytes of the prefix, then the rest of it with part of the message, then the remainder.
    const parts = [frame.subarray(0, 3), frame.subarray(3, 40), frame.subarray(40)];
    const answer = await rawRequest(session, envoyHeaders("MatchData"), parts, 5);
    expect(answer.status).toBe(GrpcStatus.OK);
    expect(telemetry.transactions.map((t) => t.labels.deployment)).toEqual(["alpha"]);
  });

  it("answers an oversize length prefix with RESOURCE_EXHAUSTED, trailers-only, without the body", async () => {
    const { session, telemetry } = await setup({ maxMessageBytes: 1024 });
    const prefix = Buffer.from([0, 0, 0, 0x04, 0x01]); // 1025 bytes announced
    const answer = await rawRequest(session, envoyHeaders("MatchData"), [prefix]);
    expect(answer.trailers).toBeUndefined();
    expect(answer.headers[":status"]).toBe(200);
    expect(answer.status).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(answer.message).toContain("1025");
    expect(telemetry.rejected).toEqual(["message_too_large"]);
    await expectPingWorks(session);
  });

  it("stops a client streaming an oversize body (4 MiB default) and keeps the connection", async () => {
    const { session } = await setup();
    const body = Buffer.alloc(4 * 1024 * 1024 + 1, 1);
    const answer = await rawRequest(session, envoyHeaders("MatchData"), [grpcFrame(body)]);
    expect(answer.status).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    await expectPingWorks(session);
  });

  it("answers an undecodable protobuf message with INVALID_ARGUMENT", async () => {
    const { session, telemetry } = await setup();
    const garbage = Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f]);
    const answer = await rawRequest(session, envoyHeaders("MatchData"), [grpcFrame(garbage)]);
    expect(answer.status).toBe(GrpcStatus.INVALID_ARGUMENT);
    expect(telemetry.rejected).toEqual(["malformed"]);
    expect(telemetry.transactions).toEqual([]);
  });

  it("answers a stream that ends mid-message with INTERNAL", async () => {
    const { session } = await setup();
    const whole = ping(5n);
    const answer = await rawRequest(session, envoyHeaders("Ping"), [whole.subarray(0, whole.length - 1)]);
    expect(answer.status).toBe(GrpcStatus.INTERNAL);
    await expectPingWorks(session);
  });

  it("refuses a unary call with no message or with two messages, and keeps serving", async () => {
    const { session } = await setup();
    const none = await rawRequest(session, envoyHeaders("Ping"), [Buffer.alloc(0)]);
    expect(none.status).toBe(GrpcStatus.INTERNAL);
    const two = await rawRequest(session, envoyHeaders("Ping"), [Buffer.concat([ping(1n), ping(2n)])]);
    expect(two.status).toBe(GrpcStatus.INTERNAL);
    expect(two.body.length).toBe(0);
    await expectPingWorks(session);
  });

  it("answers an unknown method with UNIMPLEMENTED, trailers-only", async () => {
    const { session, telemetry } = await setup();
    const answer = await rawRequest(session, { ...envoyHeaders("Ping"), ":path": "/leaksignal.Leaksignal/Nope" }, [
      ping(1n),
    ]);
    expect(answer.trailers).toBeUndefined();
    expect(answer.headers).toMatchObject({ ":status": 200, "content-type": "application/grpc", "grpc-status": "12" });
    expect(answer.message).toContain("/leaksignal.Leaksignal/Nope");
    expect(telemetry.rejected).toEqual(["unimplemented"]);
  });

  it("answers an UpdatePolicy stream that ends before its first message, and one that sends only an empty frame", async () => {
    const { session, telemetry, server } = await setup();
    for (const chunks of [[], [Buffer.alloc(0)]]) {
      const answer = await rawRequest(session, envoyHeaders("UpdatePolicy"), chunks);
      expect(answer.trailers).toBeUndefined();
      expect(answer.status).toBe(GrpcStatus.INVALID_ARGUMENT);
      expect(decodeURIComponent(String(answer.message))).toContain("needs a first message naming the deployment");
    }
    expect(telemetry.rejected).toEqual(["malformed", "malformed"]);
    await eventually(() => server.open.streams === 0, "the policy streams to close");
  });

  it("refuses a gRPC content type on any method but POST with UNIMPLEMENTED, on every path", async () => {
    const { session, telemetry } = await setup();
    const cases = [
      ["GET", "UpdatePolicy", []],
      ["GET", "Ping", []],
      ["PUT", "Ping", [ping(1n)]],
      ["DELETE", "MatchData", []],
      ["GET", "Nope", []],
    ] as const;
    for (const [method, path, chunks] of cases) {
      const answer = await rawRequest(session, envoyHeaders(path, { ":method": method }), chunks);
      expect(answer.trailers).toBeUndefined();
      expect(answer.body.length).toBe(0);
      expect(answer.status).toBe(GrpcStatus.UNIMPLEMENTED);
      expect(decodeURIComponent(String(answer.message))).toBe(`gRPC calls are POST requests, not ${method}`);
    }
    expect(telemetry.rejected).toEqual(cases.map(() => "unimplemented"));
    await expectPingWorks(session);
  });

  it("sends early errors trailers-only: one HEADERS frame with status, content-type, grpc-status, grpc-message", async () => {
    const { session } = await setup();
    const request = UpdatePolicyRequest.encode({ apiKey: "nobody", deploymentName: "", commit: "", semver: "" });
    const answer = await rawRequest(session, envoyHeaders("UpdatePolicy"), [grpcFrame(request.finish())]);
    expect(answer.trailers).toBeUndefined();
    expect(answer.body.length).toBe(0);
    expect(answer.headers).toMatchObject({
      ":status": 200,
      "content-type": "application/grpc",
      "grpc-status": String(GrpcStatus.UNAUTHENTICATED),
    });
    // The refused key is not echoed: it may be a secret.
    expect(decodeURIComponent(String(answer.headers["grpc-message"]))).toBe("unknown deployment or api key");
  });

  it("decodes gzip-compressed messages and answers uncompressed", async () => {
    const { session } = await setup();
    const compressed = grpcFrame(gzipSync(PingMessage.encode({ timestamp: 99n }).finish()), true);
    const answer = await rawRequest(session, envoyHeaders("Ping", { "grpc-encoding": "gzip" }), [compressed]);
    expect(answer.status).toBe(GrpcStatus.OK);
    expect(answer.headers["grpc-encoding"]).toBeUndefined();
    expect(grpcMessages(answer.body).map((m) => PingMessage.decode(m).timestamp)).toEqual([99n]);
  });

  it("refuses a compressed message in an unsupported encoding with UNIMPLEMENTED and grpc-accept-encoding", async () => {
    const { session } = await setup();
    const compressed = grpcFrame(PingMessage.encode({ timestamp: 1n }).finish(), true);
    const answer = await rawRequest(session, envoyHeaders("Ping", { "grpc-encoding": "snappy" }), [compressed]);
    expect(answer.status).toBe(GrpcStatus.UNIMPLEMENTED);
    expect(answer.headers["grpc-accept-encoding"]).toBe("identity,gzip");
  });

  it("answers a call past its grpc-timeout with DEADLINE_EXCEEDED", async () => {
    const { session, telemetry } = await setup();
    // Headers only: the request never completes, so only the deadline can end it.
    const stream = session.request(envoyHeaders("Ping", { "grpc-timeout": "50m" }));
    const headers = await new Promise<Record<string, unknown>>((resolve) => stream.on("response", resolve));
    expect(headers["grpc-status"]).toBe(String(GrpcStatus.DEADLINE_EXCEEDED));
    expect(telemetry.rejected).toEqual(["deadline_exceeded"]);
    stream.destroy();
  });

  it("serves a plain HTTP/2 GET on the same connection as a gRPC call", async () => {
    const { session, registry } = await setup();
    const [grpc, plain] = await Promise.all([
      rawRequest(session, envoyHeaders("Ping", { "grpc-timeout": "0m" }), [ping(3n)]),
      rawRequest(session, { ":method": "GET", ":path": "/", ":authority": "leaksignal_infra" }),
    ]);
    expect(grpc.status).toBe(GrpcStatus.OK);
    expect(plain.headers[":status"]).toBe(200);
    expect(plain.headers["content-type"]).toMatch(/^text\/plain/);
    expect(plain.body.toString()).toContain(`${registry.current.size} deployments loaded`);
  });

  it("survives streams reset right after opening, and forgets them", async () => {
    const { session, server, registry } = await setup();
    for (const method of ["UpdatePolicy", "MatchData", "Ping"]) {
      const stream = session.request(envoyHeaders(method));
      stream.on("error", () => {});
      stream.close(constants.NGHTTP2_CANCEL);
    }
    // A policy stream reset after it was registered, too.
    const policy = session.request(envoyHeaders("UpdatePolicy"));
    policy.on("error", () => {});
    policy.write(
      grpcFrame(UpdatePolicyRequest.encode({ apiKey: "alpha", deploymentName: "", commit: "", semver: "" }).finish()),
    );
    await new Promise((resolve) => policy.once("data", resolve));
    expect(registry.waiting("alpha")).toBe(1);
    policy.close(constants.NGHTTP2_CANCEL);

    await eventually(
      () => server.open.streams === 0 && registry.waiting("alpha") === 0,
      "reset streams to be forgotten",
    );
    await expectPingWorks(session);
  });

  it("serves several connections at once and keeps serving after a connection is destroyed mid-call", async () => {
    const { port, server } = await setup();
    const more = await Promise.all([h2Connect(port), h2Connect(port), h2Connect(port)]);
    sessions.push(...more);
    const policy = more[0]?.request(envoyHeaders("UpdatePolicy"));
    policy?.on("error", () => {});
    policy?.write(
      grpcFrame(UpdatePolicyRequest.encode({ apiKey: "alpha", deploymentName: "", commit: "", semver: "" }).finish()),
    );
    await new Promise((resolve) => policy?.once("data", resolve));
    more[0]?.destroy();
    await Promise.all(more.slice(1).map(expectPingWorks));
    // The first connection and the two still open.
    await eventually(
      () => server.open.sessions === 3 && running?.registry.waiting("alpha") === 0,
      "the lost session to be forgotten",
    );
  });
});

describe("gRPC header values", () => {
  it("parses grpc-timeout in every unit, zero meaning no deadline", () => {
    expect(parseGrpcTimeout("2H")).toBe(7_200_000);
    expect(parseGrpcTimeout("3M")).toBe(180_000);
    expect(parseGrpcTimeout("4S")).toBe(4_000);
    expect(parseGrpcTimeout("5m")).toBe(5);
    expect(parseGrpcTimeout("2500u")).toBe(3);
    expect(parseGrpcTimeout("1n")).toBe(1);
    expect(parseGrpcTimeout("0m")).toBeUndefined();
    expect(parseGrpcTimeout(undefined)).toBeUndefined();
    expect(() => parseGrpcTimeout("5 m")).toThrow(/malformed/);
    expect(() => parseGrpcTimeout("123456789S")).toThrow(/malformed/);
  });

  it("percent-encodes grpc-message", () => {
    expect(encodeGrpcMessage("plain text")).toBe("plain text");
    expect(encodeGrpcMessage("100% é\n")).toBe("100%25 %C3%A9%0A");
  });
});
