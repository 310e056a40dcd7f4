import { type ClientHttp2Session, connect as connectH2 } from "node:http2";
import { connect, type Socket } from "node:net";
import { afterEach, describe, expect, it } from "vitest";
import type { IngestionConfig } from "../../src/adapters/ingestion/ingestion-server";
import type { PolicyStreamLimits } from "../../src/domain/proxies/proxy-registry";
import type { MatchDataResponse, PingMessage } from "../../src/generated/leaksignal";
import type { LeaksignalClient } from "../generated/leaksignal";
import { GrpcStatus, leaksignalClient, PolicyStreamClient, unary } from "../support/grpc-client";
import { FRAME, grpcHeaders, H2_ERROR, RawH2Connection } from "../support/raw-h2";
import { currentTransaction } from "../support/transactions";
import { alpha, beta, type RunningIngestion, startIngestion } from "./ingestion-support";

// Each limit of the ingestion port, hit for real over sockets: the client is refused in the documented
// way, the refusal is counted under its reason, and other clients go on being served.

let running: RunningIngestion | undefined;
const cleanups: Array<() => void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  running?.registry.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

async function serving(options: Partial<IngestionConfig>, policyStreams?: PolicyStreamLimits) {
  running = await startIngestion(
    { keepalive: { intervalMs: 0, timeoutMs: 1 }, ...options },
    [alpha, beta],
    policyStreams,
  );
  return running;
}

function client(port: number): LeaksignalClient {
  const c = leaksignalClient(port);
  cleanups.push(() => c.close());
  return c;
}

async function rawConnection(port: number): Promise<RawH2Connection> {
  const connection = await RawH2Connection.open(port);
  cleanups.push(() => connection.destroy());
  return connection;
}

/** Other clients are unaffected: a fresh gRPC client's Ping and an HTTP/1.1 GET / both answer. */
async function othersStillServed(port: number): Promise<void> {
  const ping = await unary<PingMessage>((cb) => client(port).ping({ timestamp: 42n }, cb));
  expect(ping.response?.timestamp).toBe(42n);
  const probe = await fetch(`http://127.0.0.1:${port}/ready`);
  expect(probe.status).toBe(200);
}

function rawSocket(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, "127.0.0.1", () => resolve(socket));
    socket.once("error", reject);
    cleanups.push(() => socket.destroy());
  });
}

/** Everything a raw socket receives until it closes, and when it closed (ms after `since`). */
function received(socket: Socket, since: number): Promise<{ text: string; closedAfterMs: number }> {
  let text = "";
  socket.setEncoding("latin1");
  socket.on("data", (chunk: string) => {
    text += chunk;
  });
  socket.on("error", () => {});
  return new Promise((resolve) => socket.once("close", () => resolve({ text, closedAfterMs: Date.now() - since })));
}

describe("max concurrent streams per HTTP/2 connection", () => {
  it("is advertised in SETTINGS; a client opening more loses its connection, counted as too_many_streams", async () => {
    const { port, telemetry } = await serving({ limits: { maxConcurrentStreams: 4 } });
    const session: ClientHttp2Session = connectH2(`http://127.0.0.1:${port}`);
    cleanups.push(() => session.destroy());
    const settings = await new Promise<{ maxConcurrentStreams?: number }>((resolve) =>
      session.once("remoteSettings", resolve),
    );
    expect(settings.maxConcurrentStreams).toBe(4);

    // A client that honours the setting queues its calls: 12 at once on one connection all succeed.
    const polite = client(port);
    const pings = await Promise.all(
      Array.from({ length: 12 }, (_, i) => unary<PingMessage>((cb) => polite.ping({ timestamp: BigInt(i) }, cb))),
    );
    expect(pings.map((p) => p.response?.timestamp)).toEqual(Array.from({ length: 12 }, (_, i) => BigInt(i)));

    // One that does not: four open streams, then a fifth.
    const rude = await rawConnection(port);
    for (let i = 0; i < 5; i++) rude.request(grpcHeaders("Ping"), undefined, false);
    await rude.until((f) => f.type === FRAME.GOAWAY, "GOAWAY");
    await rude.closed;
    expect(telemetry.rejected).toEqual(["too_many_streams"]);
    await othersStillServed(port);
    await expect.poll(() => running?.server.open.streams).toBe(0);
  });
});

describe("HTTP/2 session memory", () => {
  it("refuses new streams with ENHANCE_YOUR_CALM past it, then closes the connection, counted as session_memory", async () => {
    const { port, telemetry } = await serving({ limits: { maxSessionMemoryMb: 1, maxConcurrentStreams: 100_000 } });
    const session = connectH2(`http://127.0.0.1:${port}`);
    cleanups.push(() => session.destroy());
    session.on("error", () => {});
    const codes = new Map<number, number>();
    const closes: Promise<void>[] = [];
    // Open streams that never end, each with a kilobyte of headers, until the connection's memory runs out.
    for (let i = 0; i < 3000; i++) {
      const stream = session.request(
        {
          ":method": "POST",
          ":path": "/leaksignal.Leaksignal/Ping",
          "content-type": "application/grpc",
          "x-pad": "p".repeat(1024),
        },
        { endStream: false },
      );
      stream.on("error", () => {});
      closes.push(
        new Promise((resolve) =>
          stream.once("close", () => {
            codes.set(stream.rstCode ?? -1, (codes.get(stream.rstCode ?? -1) ?? 0) + 1);
            resolve();
          }),
        ),
      );
    }
    await Promise.all(closes);
    expect(codes.get(H2_ERROR.ENHANCE_YOUR_CALM)).toBeGreaterThan(0);
    expect(session.destroyed || session.closed).toBe(true);
    expect(telemetry.rejected).toEqual(["session_memory"]);
    await othersStillServed(port);
    await expect.poll(() => running?.server.open.sessions).toBe(1);
  });
});

describe("policy streams per deployment and in total", () => {
  it("refuses a stream past either limit with RESOURCE_EXHAUSTED, counted as policy_stream_limit", async () => {
    const { port, registry, telemetry } = await serving({}, { maxStreams: 3, maxStreamsPerDeployment: 2 });
    const proxies = client(port);
    const open = (apiKey: string) => {
      const stream = new PolicyStreamClient(proxies, { apiKey });
      cleanups.push(() => stream.cancel());
      return stream;
    };
    const [a1, a2] = [open("alpha"), open("alpha")];
    await Promise.all([a1.received(1), a2.received(1)]);

    const a3 = await open("alpha").ended;
    expect(a3.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(a3.details).toMatch(/this deployment already has 2 policy streams open on this agent/);

    await open("beta").received(1);
    const b2 = await open("beta").ended;
    expect(b2.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(b2.details).toMatch(/this agent already has 3 policy streams open/);
    expect(telemetry.rejected).toEqual(["policy_stream_limit", "policy_stream_limit"]);
    expect([registry.waiting("alpha"), registry.waiting("beta"), registry.waitingTotal]).toEqual([2, 1, 3]);

    // Telemetry is still taken from every proxy, and a freed place is taken again.
    const report = await unary<MatchDataResponse>((cb) =>
      proxies.matchData(currentTransaction({ apiKey: "alpha" }), cb),
    );
    expect(report.error).toBeUndefined();
    a1.cancel();
    await expect.poll(() => registry.waiting("alpha")).toBe(1);
    await open("alpha").received(1);
    expect(registry.waitingTotal).toBe(3);
    await othersStillServed(port);
  });
});

describe("HTTP/1.1 timeouts (slowloris)", () => {
  it("answers 408 and closes a connection whose headers trickle in past the request timeout", async () => {
    const { port, telemetry } = await serving({ limits: { http1RequestTimeoutMs: 300 } });
    const slow = await rawSocket(port);
    const started = Date.now();
    const answer = received(slow, started);
    slow.write("GET / HTTP/1.1\r\nhost: agent\r\n");
    const drip = setInterval(() => slow.writable && slow.write("x-slow: 1\r\n"), 50);
    cleanups.push(() => clearInterval(drip));
    const { text, closedAfterMs } = await answer;
    clearInterval(drip);
    expect(text).toMatch(/^HTTP\/1\.1 408 Request Timeout\r\n/);
    // The timeout, plus at most one check interval (300 ms here) and some slack.
    expect(closedAfterMs).toBeGreaterThanOrEqual(300);
    expect(closedAfterMs).toBeLessThan(1500);
    expect(telemetry.rejected).toEqual(["request_timeout"]);
    await othersStillServed(port);
  });

  it("drops a connection that sends nothing within the handshake timeout, counted as request_timeout", async () => {
    const { port, telemetry } = await serving({ limits: { handshakeTimeoutMs: 200 } });
    const started = Date.now();
    const { text, closedAfterMs } = await received(await rawSocket(port), started);
    expect(text).toBe("");
    expect(closedAfterMs).toBeGreaterThanOrEqual(190);
    expect(closedAfterMs).toBeLessThan(1000);
    expect(telemetry.rejected).toEqual(["request_timeout"]);
    await othersStillServed(port);
  });

  it("closes a kept-alive connection idle past the idle timeout, and not before", async () => {
    const { port, telemetry } = await serving({ limits: { http1IdleTimeoutMs: 400 } });
    const socket = await rawSocket(port);
    const answered = new Promise<number>((resolve) => socket.once("data", () => resolve(Date.now())));
    const closed = received(socket, 0);
    socket.write("GET / HTTP/1.1\r\nhost: agent\r\n\r\n");
    const answeredAt = await answered;
    const { text, closedAfterMs } = await closed;
    expect(text).toMatch(/^HTTP\/1\.1 200 OK\r\n/);
    const idleMs = closedAfterMs - answeredAt;
    expect(idleMs).toBeGreaterThanOrEqual(380);
    expect(idleMs).toBeLessThan(1500);
    expect(telemetry.rejected, JSON.stringify(running?.logger.lines)).toEqual([]);
  });
});

describe("max message size", () => {
  it("refuses a larger MatchData with RESOURCE_EXHAUSTED, counted as message_too_large; smaller ones pass", async () => {
    const { port, telemetry } = await serving({ maxMessageBytes: 2048 });
    const proxy = client(port);
    const big = currentTransaction({ apiKey: "alpha", requestHeaders: [{ name: "x-big", value: "b".repeat(4096) }] });
    const refused = await unary<MatchDataResponse>((cb) => proxy.matchData(big, cb));
    expect(refused.error?.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
    expect(telemetry.rejected).toEqual(["message_too_large"]);
    const small = await unary<MatchDataResponse>((cb) => proxy.matchData(currentTransaction({ apiKey: "alpha" }), cb));
    expect(small.error).toBeUndefined();
    expect(telemetry.transactions).toHaveLength(1);
    await othersStillServed(port);
  });
});
