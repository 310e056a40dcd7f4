import { request as httpRequest } from "node:http";
import { connect as connectH2, constants as h2 } from "node:http2";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcFrame } from "../../scripts/reliability/wire";
import { policyIdOf } from "../../src/domain/policy/deployment";
import {
  type HealthCheckMsg,
  MatchDataRequest,
  type MatchDataResponse,
  type PingMessage,
} from "../../src/generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { parseExposition, seriesKey } from "../support/exposition";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { grpcHeaders } from "../support/raw-h2";
import { currentTransaction, legacyTransaction } from "../support/transactions";

const CONFIG = `
policies:
  prod:
    categories:
      email:
        - regex: "[a-zA-Z0-9_.+-]{2,}@[a-zA-Z0-9-]{3,}\\\\.[a-zA-Z0-9-.]{2,}"
      routing:
        Matchers:
          - regex: "(?-u:\\\\b)\\\\d{9}(?-u:\\\\b)"
    local_service_name:
      workload: !env "POD_NAME"
    endpoints:
      - matches: "**"
        config:
          email: {}
  legacy:
    categories:
      ssn:
        - regex: "\\\\b\\\\d{3}-\\\\d{2}-\\\\d{4}\\\\b"
    endpoints:
      - matches: "**"
        config:
          ssn: {}
`;

function httpGet(port: number, path: string): Promise<{ status: number; body: string }> {
  return new Promise((done, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, method: "GET" }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk) => {
        body += chunk;
      });
      res.on("end", () => done({ status: res.statusCode ?? 0, body }));
    });
    req.on("error", reject);
    req.end();
  });
}

describe("the agent process", () => {
  let agent: AgentProcess;
  let client: ReturnType<typeof leaksignalClient>;

  beforeAll(async () => {
    agent = await AgentProcess.serving({ config: CONFIG });
    client = leaksignalClient(agent.ingestionPort);
  });

  afterAll(async () => {
    client?.close();
    await agent?.stop();
  });

  it("answers probes over HTTP/1.1 with its status line", async () => {
    const { status, body } = await httpGet(agent.ingestionPort, "/");
    expect(status).toBe(200);
    expect(body).toMatch(/^leakagent \d+\.\d+\.\d+/);
    expect(body).toContain("2 deployments");
  });

  it("sends each deployment its own policy, with legacy and current fields, for both identity forms", async () => {
    const byKey = new PolicyStreamClient(client, { apiKey: "prod" });
    const byName = new PolicyStreamClient(client, { deploymentName: "legacy" });
    const [prod] = await byKey.received(1);
    const [legacy] = await byName.received(1);
    expect(prod?.policy?.policy).toContain("email");
    expect(prod?.policy?.policy).not.toContain("ssn");
    expect(prod?.policy?.policy).toContain('!env "POD_NAME"');
    expect(prod?.policy?.policy).toContain("(?-u:\\\\b)");
    expect(prod?.policy?.policyId).toBe(policyIdOf(prod?.policy?.policy ?? ""));
    expect(prod?.legacyPolicyId).toBe(prod?.policy?.policyId);
    expect(prod?.legacyPolicy).toBe(prod?.policy?.policy);
    expect(legacy?.policy?.policy).toContain("ssn");
    expect(legacy?.policy?.policy).not.toContain("email");
    byKey.cancel();
    byName.cancel();
  });

  it("turns away an unknown api key with UNAUTHENTICATED and counts it", async () => {
    const stream = new PolicyStreamClient(client, { apiKey: "intruder" });
    const ended = await stream.ended;
    expect(ended.code).toBe(GrpcStatus.UNAUTHENTICATED);
    expect(ended.details).toBe("unknown deployment or api key");
    expect(stream.responses).toEqual([]);
    // An unknown name may be a secret key: counted as "unknown", never under the value presented.
    const metrics = parseExposition(await agent.metrics());
    expect(
      metrics.samples.get(seriesKey("leakagent_policy_update_turnaway", { deployment: "unknown", ip: "127.0.0.1" })),
    ).toBe(1);
    expect([...metrics.samples.keys()].some((key) => key.includes("intruder"))).toBe(false);
  });

  it("counts live policy streams per deployment, up and back down", async () => {
    const waiting = async () =>
      parseExposition(await agent.metrics()).samples.get(
        seriesKey("leakagent_policy_update_waiting", { deployment: "prod" }),
      );
    const streams = [0, 1, 2].map(() => new PolicyStreamClient(client, { apiKey: "prod" }));
    await Promise.all(streams.map((s) => s.received(1)));
    expect(await waiting()).toBe(3);
    for (const s of streams) s.cancel();
    await expect.poll(waiting, { timeout: 5000 }).toBe(0);
  });

  it("echoes Ping and answers HealthCheck", async () => {
    const ping = await unary<PingMessage>((cb) => client.ping({ timestamp: 1_733_000_000_123_456_789n }, cb));
    expect(ping.response?.timestamp).toBe(1_733_000_000_123_456_789n);
    const health = await unary<HealthCheckMsg>((cb) => client.healthCheck({}, cb));
    expect(health.error).toBeUndefined();
  });

  it("reflects MatchData of both proxy generations in /metrics", async () => {
    const current = currentTransaction({ apiKey: "prod" });
    const legacy = legacyTransaction({ deploymentName: "legacy" });
    for (let i = 0; i < 3; i++)
      expect((await unary<MatchDataResponse>((cb) => client.matchData(current, cb))).error).toBeUndefined();
    expect((await unary<MatchDataResponse>((cb) => client.matchData(legacy, cb))).error).toBeUndefined();

    const { samples, types } = parseExposition(await agent.metrics());
    const currentLabels = {
      deployment: "prod",
      policy_path: current.policyPath,
      local_service: "checkout",
      peer_service: "cluster.local/shop/payments",
      is_outbound: "true",
      ip: current.ip,
      token: current.token,
    };
    expect(samples.get(seriesKey("leakagent_match_inbound", { deployment: "prod" }))).toBe(3);
    expect(samples.get(seriesKey("leaksignal_status_code", { ...currentLabels, status: "503" }))).toBe(3);
    expect(types.get("leaksignal_status_code")).toBe("counter");
    expect(types.get("leaksignal_request_time_ms")).toBe("histogram");
    // request: header start → body end = 5 ms; response: request body end → response body end = 20 ms.
    expect(samples.get(seriesKey("leaksignal_request_time_ms_count", currentLabels))).toBe(3);
    expect(samples.get(seriesKey("leaksignal_request_time_ms_sum", currentLabels))).toBeCloseTo(15);
    expect(samples.get(seriesKey("leaksignal_response_time_ms_sum", currentLabels))).toBeCloseTo(60);
    // match time: 100 + 400 + 1000 + 500 µs = 2 ms per transaction.
    expect(samples.get(seriesKey("leaksignal_match_time_ms_sum", currentLabels))).toBeCloseTo(6);
    expect(samples.get(seriesKey("leaksignal_request_size_bytes_sum", currentLabels))).toBe(3 * 512);
    expect(samples.get(seriesKey("leaksignal_response_size_bytes_sum", currentLabels))).toBe(3 * 4096);
    const match = (category: string, inResponse: string, inHeader: string) => ({
      ...currentLabels,
      category,
      in_response: inResponse,
      in_header: inHeader,
    });
    expect(samples.get(seriesKey("leaksignal_match_count_sum", match("email", "true", "false")))).toBe(6);
    expect(samples.get(seriesKey("leaksignal_match_count_count", match("email", "true", "false")))).toBe(3);
    expect(samples.get(seriesKey("leaksignal_match_count_sum", match("access_token", "false", "true")))).toBe(3);
    expect(samples.get(seriesKey("leaksignal_match_count_sum", match("credit_card", "false", "false")))).toBe(3);

    const legacyLabels = {
      deployment: "legacy",
      policy_path: legacy.policyPath,
      local_service: "users-7d9f",
      peer_service: "unknown",
      is_outbound: "false",
      ip: legacy.ip,
      token: "",
    };
    expect(samples.get(seriesKey("leaksignal_status_code", { ...legacyLabels, status: "200" }))).toBe(1);
    expect(samples.get(seriesKey("leaksignal_response_size_bytes_sum", legacyLabels))).toBe(2048);
    expect(
      samples.get(
        seriesKey("leaksignal_match_count_sum", {
          ...legacyLabels,
          category: "email",
          in_response: "true",
          in_header: "false",
        }),
      ),
    ).toBe(2);
    expect(
      samples.get(
        seriesKey("leaksignal_match_count_sum", {
          ...legacyLabels,
          category: "ssn",
          in_response: "true",
          in_header: "false",
        }),
      ),
    ).toBe(1);
  });

  it("refuses MatchData of an unknown deployment and creates no series for it", async () => {
    const result = await unary<MatchDataResponse>((cb) =>
      client.matchData(currentTransaction({ apiKey: "nobody" }), cb),
    );
    expect(result.error?.code).toBe(GrpcStatus.UNAUTHENTICATED);
    const text = await agent.metrics();
    expect(text).not.toContain('deployment="nobody"');
  });

  it("serves a plain HTTP/2 GET on the same connection as a gRPC call, and survives bad frames", async () => {
    const session = connectH2(`http://127.0.0.1:${agent.ingestionPort}`);
    session.on("error", () => {});
    const exchange = (headers: Record<string, string>, body?: Buffer) =>
      new Promise<{ headers: Record<string, unknown>; trailers: Record<string, unknown>; data: Buffer }>(
        (done, reject) => {
          const stream = session.request(headers, { endStream: body === undefined });
          let responseHeaders: Record<string, unknown> = {};
          let trailers: Record<string, unknown> = {};
          const chunks: Buffer[] = [];
          stream.on("response", (h) => {
            responseHeaders = h;
          });
          stream.on("trailers", (t) => {
            trailers = t;
          });
          stream.on("data", (c: Buffer) => chunks.push(c));
          stream.on("end", () => done({ headers: responseHeaders, trailers, data: Buffer.concat(chunks) }));
          stream.on("error", reject);
          if (body !== undefined) stream.end(body);
        },
      );
    // Envoy's gRPC client sends `0m` on every unary call with no timeout configured.
    const envoyCall = (method: string) => ({ ...grpcHeaders(method), "grpc-timeout": "0m" });
    const frame = (message: Buffer, declaredLength = message.length) => grpcFrame(message, { declaredLength });

    const get = await exchange({ [h2.HTTP2_HEADER_METHOD]: "GET", [h2.HTTP2_HEADER_PATH]: "/" });
    expect(get.headers[":status"]).toBe(200);
    expect(get.data.toString()).toContain("leakagent");

    const health = await exchange(envoyCall("HealthCheck"), frame(Buffer.alloc(0)));
    expect(health.trailers["grpc-status"] ?? health.headers["grpc-status"]).toBe("0");

    const oversize = await exchange(envoyCall("MatchData"), frame(Buffer.alloc(16), 64 * 1024 * 1024));
    expect(oversize.trailers["grpc-status"] ?? oversize.headers["grpc-status"]).toBe(
      String(GrpcStatus.RESOURCE_EXHAUSTED),
    );

    const garbage = await exchange(envoyCall("MatchData"), frame(Buffer.from([0xff, 0xff, 0xff, 0xff, 0x0f])));
    expect(garbage.trailers["grpc-status"] ?? garbage.headers["grpc-status"]).toBe(String(GrpcStatus.INVALID_ARGUMENT));

    const ok = await exchange(
      envoyCall("MatchData"),
      frame(Buffer.from(MatchDataRequest.encode(currentTransaction()).finish())),
    );
    expect(ok.trailers["grpc-status"]).toBe("0");
    session.close();

    // Still serving a fresh client afterwards.
    const ping = await unary<PingMessage>((cb) => client.ping({ timestamp: 7n }, cb));
    expect(ping.response?.timestamp).toBe(7n);
  });
});

describe("start-up and shutdown", () => {
  it("runs on the embedded default configuration when no config file is given, and says so", async () => {
    const agent = await AgentProcess.serving();
    try {
      expect(agent.logs.some((l) => String(l.message).includes("embedded default"))).toBe(true);
      const metrics = await agent.metrics();
      expect(metrics).toContain("leakagent_build_info");
      const client = leaksignalClient(agent.ingestionPort);
      const stream = new PolicyStreamClient(client, { apiKey: "example" });
      const [response] = await stream.received(1);
      expect(response?.policy?.policy).toContain("bank_routing_us");
      stream.cancel();
      client.close();
    } finally {
      await agent.stop();
    }
  });

  it("stops with exit code 2 and a one-line reason on an invalid bind address", async () => {
    const agent = AgentProcess.start({ env: { LS_INGESTION_BIND: "localhost:99999" } });
    const exit = await agent.exited;
    expect(exit.code).toBe(2);
    expect(agent.output()).toContain("LS_INGESTION_BIND");
  });

  it("stops with exit code 2 and file:line:column on an invalid config", async () => {
    const agent = AgentProcess.start({ config: "policies:\n  prod:\n    categories: [\n" });
    const exit = await agent.exited;
    expect(exit.code).toBe(2);
    expect(agent.output()).toMatch(/config\.yaml:\d+:\d+/);
  });

  it("ends policy streams with UNAVAILABLE on SIGTERM and exits 0", async () => {
    const agent = await AgentProcess.serving({ config: CONFIG });
    const client = leaksignalClient(agent.ingestionPort);
    const stream = new PolicyStreamClient(client, { apiKey: "prod" });
    await stream.received(1);
    const started = Date.now();
    const exit = await agent.stop("SIGTERM");
    const ended = await stream.ended;
    client.close();
    expect(ended.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(exit.code).toBe(0);
    expect(Date.now() - started).toBeLessThan(10_000);
  });
});
