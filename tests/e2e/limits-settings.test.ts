import { rm } from "node:fs/promises";
import { credentials, Metadata } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { INGESTION_DEFAULTS } from "../../src/adapters/ingestion/ingestion-server";
import { DEFAULT_SHUTDOWN_DELAY_MS, readSettings } from "../../src/app/settings";
import { DEFAULT_POLICY_STREAM_LIMITS } from "../../src/domain/proxies/proxy-registry";
import type { PingMessage } from "../../src/generated/leaksignal";
import { LeaksignalClient } from "../generated/leaksignal";
import { AgentProcess } from "../support/agent-process";
import { GrpcStatus, PolicyStreamClient, unary } from "../support/grpc-client";
import { opensslMissing, TestCertificates } from "../support/test-certificates";

// The limit, keepalive, TLS and shutdown settings: read from the environment, refused with exit code 2 and
// one line naming the variable when unusable, and wired through to the running agent.

const CONFIG = "policies:\n  prod:\n    categories: {}\n";

describe("limit settings", () => {
  it("default to the documented values", () => {
    const settings = readSettings({});
    expect(settings.ingestionLimits).toEqual({
      maxConcurrentStreams: 1000,
      maxSessionMemoryMb: 10,
      maxPolicyBacklogBytes: 4 * 1024 * 1024,
      handshakeTimeoutMs: 10_000,
      http1RequestTimeoutMs: 10_000,
      http1IdleTimeoutMs: 60_000,
    });
    expect(settings.ingestionLimits).toEqual(INGESTION_DEFAULTS.limits);
    expect(settings.policyStreamLimits).toEqual({ maxStreams: 10_000, maxStreamsPerDeployment: 5_000 });
    expect(settings.policyStreamLimits).toEqual(DEFAULT_POLICY_STREAM_LIMITS);
    expect(settings.keepalive).toEqual({ intervalMs: 30_000, timeoutMs: 10_000 });
    expect(settings.tls).toBeUndefined();
    expect(settings.shutdownDelayMs).toBe(DEFAULT_SHUTDOWN_DELAY_MS);
  });

  it("take what the environment says", () => {
    const settings = readSettings({
      LS_MAX_CONCURRENT_STREAMS: "64",
      LS_HTTP2_MAX_SESSION_MEMORY_MB: "32",
      LS_MAX_POLICY_BACKLOG_BYTES: "1048576",
      LS_HANDSHAKE_TIMEOUT_MS: "5000",
      LS_HTTP1_REQUEST_TIMEOUT_MS: "3000",
      LS_HTTP1_IDLE_TIMEOUT_MS: "20000",
      LS_MAX_POLICY_STREAMS: "200",
      LS_MAX_POLICY_STREAMS_PER_DEPLOYMENT: "50",
      LS_KEEPALIVE_INTERVAL_MS: "0",
      LS_KEEPALIVE_TIMEOUT_MS: "2000",
      LS_TLS_CERT_PATH: "/tls/tls.crt",
      LS_TLS_KEY_PATH: "/tls/tls.key",
      LS_TLS_CLIENT_CA_PATH: "/tls/ca.crt",
      LS_SHUTDOWN_DELAY_MS: "4000",
    });
    expect(settings.ingestionLimits).toEqual({
      maxConcurrentStreams: 64,
      maxSessionMemoryMb: 32,
      maxPolicyBacklogBytes: 1048576,
      handshakeTimeoutMs: 5000,
      http1RequestTimeoutMs: 3000,
      http1IdleTimeoutMs: 20000,
    });
    expect(settings.policyStreamLimits).toEqual({ maxStreams: 200, maxStreamsPerDeployment: 50 });
    expect(settings.keepalive).toEqual({ intervalMs: 0, timeoutMs: 2000 });
    expect(settings.tls).toEqual({ certPath: "/tls/tls.crt", keyPath: "/tls/tls.key", clientCaPath: "/tls/ca.crt" });
    expect(settings.shutdownDelayMs).toBe(4000);
  });

  it("stop the agent with exit code 2 and one line naming the variable when unusable", async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [{ LS_MAX_CONCURRENT_STREAMS: "0" }, 'LS_MAX_CONCURRENT_STREAMS="0" is not a positive whole number of streams'],
      [
        { LS_HTTP1_REQUEST_TIMEOUT_MS: "10s" },
        'LS_HTTP1_REQUEST_TIMEOUT_MS="10s" is not a positive whole number of milliseconds',
      ],
      [
        { LS_KEEPALIVE_INTERVAL_MS: "-1" },
        'LS_KEEPALIVE_INTERVAL_MS="-1" is not a whole number of milliseconds (0 or more)',
      ],
      [{ LS_SHUTDOWN_DELAY_MS: "9000" }, 'LS_SHUTDOWN_DELAY_MS="9000" is more than 4000 milliseconds'],
      [
        { LS_TLS_CERT_PATH: "/tls/tls.crt" },
        "LS_TLS_KEY_PATH is not set; TLS needs both LS_TLS_CERT_PATH and LS_TLS_KEY_PATH",
      ],
      [
        { LS_TLS_CLIENT_CA_PATH: "/tls/ca.crt" },
        "LS_TLS_CLIENT_CA_PATH is set without LS_TLS_CERT_PATH and LS_TLS_KEY_PATH",
      ],
    ];
    const agents = cases.map(([env]) => AgentProcess.start({ config: CONFIG, env }));
    for (const [i, agent] of agents.entries()) {
      expect((await agent.exited).code).toBe(2);
      expect(agent.stderr).toEqual([`leakagent: ${cases[i]?.[1]}`]);
    }
  });
});

describe.skipIf(opensslMissing !== undefined)("TLS settings on the running agent", () => {
  if (opensslMissing) console.warn(`skipping the agent's TLS wiring test: ${opensslMissing}`);
  let certs: TestCertificates | undefined;
  afterAll(async () => {
    if (certs) await rm(certs.dir, { recursive: true, force: true });
  });

  it("serves mutual TLS from LS_TLS_* and says so", async () => {
    certs = new TestCertificates();
    const ca = certs.authority("ca");
    const server = certs.issue("agent", ca, "server", 0x11);
    const proxy = certs.issue("proxy", ca, "client", 0x22);
    const agent = await AgentProcess.serving({
      config: CONFIG,
      env: { LS_TLS_CERT_PATH: server.certPath, LS_TLS_KEY_PATH: server.keyPath, LS_TLS_CLIENT_CA_PATH: ca.certPath },
    });
    try {
      expect(agent.logs.find((l) => l.message === "ingestion listening")?.tls).toBe("on");
      const connect = (withCertificate: boolean) =>
        new LeaksignalClient(
          `localhost:${agent.ingestionPort}`,
          credentials.createSsl(ca.cert, withCertificate ? proxy.key : null, withCertificate ? proxy.cert : null),
        );
      const trusted = connect(true);
      const stream = new PolicyStreamClient(trusted, { apiKey: "prod" });
      expect((await stream.received(1))[0]?.policy?.policy).toBe("categories: {}\n");
      const anonymous = connect(false);
      const refused = await unary<PingMessage>((cb) =>
        anonymous.ping({ timestamp: 1n }, new Metadata(), { deadline: Date.now() + 3000 }, cb),
      );
      expect(refused.error?.code).toBe(GrpcStatus.UNAUTHENTICATED);
      const exit = await agent.stop();
      expect(exit.code).toBe(0);
      expect((await stream.ended).code).toBe(GrpcStatus.UNAVAILABLE);
      trusted.close();
      anonymous.close();
    } finally {
      await agent.stop();
    }
  });
});
