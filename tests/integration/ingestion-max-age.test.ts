import type { ClientHttp2Session } from "node:http2";
import { afterEach, describe, expect, it } from "vitest";
import { PingMessage } from "../../src/generated/leaksignal";
import { GrpcStatus, leaksignalClient, PolicyStreamClient } from "../support/grpc-client";
import {
  alpha,
  envoyHeaders,
  grpcFrame,
  grpcMessages,
  h2Connect,
  type RunningIngestion,
  startIngestion,
} from "./ingestion-support";

let running: RunningIngestion | undefined;
const cleanups: Array<() => void> = [];

afterEach(async () => {
  for (const cleanup of cleanups.splice(0)) cleanup();
  running?.registry.disconnectAll("shutdown");
  await running?.server.stop();
  running = undefined;
});

async function serving(maxConnectionAgeMs: number, drainTimeoutMs = 5_000): Promise<RunningIngestion> {
  running = await startIngestion({ maxConnectionAgeMs, drainTimeoutMs });
  return running;
}

async function connected(port: number): Promise<{ session: ClientHttp2Session; connectedAt: number }> {
  const session = await h2Connect(port);
  cleanups.push(() => session.destroy());
  return { session, connectedAt: Date.now() };
}

const goaway = (session: ClientHttp2Session) =>
  new Promise<{ code: number; at: number }>((resolve) =>
    session.once("goaway", (code) => resolve({ code, at: Date.now() })),
  );
const closed = (session: ClientHttp2Session) =>
  new Promise<number>((resolve) => session.once("close", () => resolve(Date.now())));

describe("maximum connection age on the ingestion port", () => {
  it("sends GOAWAY (NO_ERROR) after the age, within the ±10 % jitter", async () => {
    const ageMs = 600;
    const { port } = await serving(ageMs);
    const sessions = await Promise.all([0, 1, 2, 3].map(() => connected(port)));
    const received = await Promise.all(sessions.map(({ session }) => goaway(session)));
    for (const [i, { code, at }] of received.entries()) {
      const age = at - (sessions[i]?.connectedAt ?? 0);
      expect(code).toBe(0);
      // 0.9 × age at the earliest; 1.1 × age plus scheduling slack at the latest.
      expect(age).toBeGreaterThanOrEqual(ageMs * 0.9 - 5);
      expect(age).toBeLessThanOrEqual(ageMs * 1.1 + 150);
    }
    // Idle connections have nothing to finish: the agent closes them right away.
    await expect.poll(() => running?.server.open.sessions, { timeout: 2000 }).toBe(0);
  });

  it("ends policy streams with UNAVAILABLE; the proxy's reconnect lands on a new connection", async () => {
    const ageMs = 500;
    const { port, server, registry } = await serving(ageMs);
    const client = leaksignalClient(port);
    cleanups.push(() => client.close());
    const first = new PolicyStreamClient(client, { apiKey: alpha.name });
    const [policy] = await first.received(1);
    expect(policy?.policy?.policyId).toBe(alpha.policyId);
    expect(registry.waiting(alpha.name)).toBe(1);

    const ended = await first.ended;
    expect(ended.code).toBe(GrpcStatus.UNAVAILABLE);
    expect(ended.details).toBe("connection reached its maximum age; reconnect");
    await expect.poll(() => registry.waiting(alpha.name)).toBe(0);

    // What a proxy does next: reconnect. grpc-js saw the GOAWAY, so this opens a fresh connection.
    const second = new PolicyStreamClient(client, { apiKey: alpha.name });
    const [again] = await second.received(1);
    expect(again?.policy?.policyId).toBe(alpha.policyId);
    expect(registry.waiting(alpha.name)).toBe(1);
    await expect.poll(() => server.open.sessions).toBe(1);
    second.cancel();
  });

  it("lets a call in flight at the age finish before closing the connection", async () => {
    const { port } = await serving(300);
    const { session } = await connected(port);
    const gone = goaway(session);
    const sessionClosed = closed(session);
    // A unary call whose request message is still on its way when the age is reached.
    const stream = session.request(envoyHeaders("Ping"));
    const body: Buffer[] = [];
    let trailers: Record<string, unknown> = {};
    stream.on("data", (chunk: Buffer) => body.push(chunk));
    stream.on("trailers", (t) => {
      trailers = t;
    });
    const streamClosed = new Promise<void>((resolve) => stream.on("close", resolve));
    await gone;
    expect(session.destroyed).toBe(false);
    stream.end(grpcFrame(PingMessage.encode({ timestamp: 4242n }).finish()));
    await streamClosed;
    expect(trailers["grpc-status"]).toBe("0");
    expect(grpcMessages(Buffer.concat(body)).map((m) => PingMessage.decode(m).timestamp)).toEqual([4242n]);
    // Nothing left in flight: the agent closes the connection.
    await sessionClosed;
  });

  it("cuts a call still open after the drain timeout", async () => {
    const ageMs = 200;
    const drainTimeoutMs = 300;
    const { port } = await serving(ageMs, drainTimeoutMs);
    const { session } = await connected(port);
    const stream = session.request(envoyHeaders("Ping")); // never completes its request
    stream.on("error", () => {});
    const gone = goaway(session);
    const sessionClosed = closed(session);
    const { at: goawayAt } = await gone;
    const closedAt = await sessionClosed;
    expect(closedAt - goawayAt).toBeGreaterThanOrEqual(drainTimeoutMs - 20);
    expect(closedAt - goawayAt).toBeLessThan(drainTimeoutMs + 500);
  });

  it("never closes connections when the age is 0", async () => {
    const { port, registry } = await serving(0);
    const client = leaksignalClient(port);
    cleanups.push(() => client.close());
    const stream = new PolicyStreamClient(client, { apiKey: alpha.name });
    await stream.received(1);
    let ended = false;
    void stream.ended.then(() => {
      ended = true;
    });
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(ended).toBe(false);
    expect(registry.waiting(alpha.name)).toBe(1);
    stream.cancel();
  });
});
