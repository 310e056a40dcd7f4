import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders } from "node:http2";
import { gzipSync } from "node:zlib";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { GrpcError, GrpcStatus, MessageReader, type ReceivedMessage } from "../../src/adapters/ingestion/grpc-call";
import { observeTransaction } from "../../src/domain/telemetry/transaction";
import { MatchDataRequest, PingMessage } from "../../src/generated/leaksignal";
import type { RejectionReason } from "../../src/ports/telemetry-sink.port";
import { currentTransaction } from "../support/transactions";
import {
  envoyHeaders,
  grpcFrame,
  grpcMessages,
  h2Connect,
  type RunningIngestion,
  startIngestion,
} from "./ingestion-support";

// Property tests of how the agent cuts a request body into gRPC messages: the message reader itself,
// then the ingestion server on a loopback socket, where whole messages take a shortcut past the reader.
// Whatever way the body is cut into pieces, the same messages come out, or the same clean error.
// fast-check prints the seed and the shrunk input of any failure; FC_SEED replays it.
const SETTINGS = { numRuns: 300, seed: process.env.FC_SEED ? Number(process.env.FC_SEED) : undefined };
/** Loopback runs cost a round trip each. */
const SOCKET_SETTINGS = { ...SETTINGS, numRuns: 100 };

const LIMIT = 1024;
const MAX_UINT32 = 2 ** 32 - 1;

// ---- Bodies and how they are cut -------------------------------------------------------------------------

interface Message {
  readonly compressed: boolean;
  readonly payload: Uint8Array;
}

const message: fc.Arbitrary<Message> = fc.record({
  compressed: fc.boolean(),
  payload: fc.uint8Array({ maxLength: 300 }),
});
const messages = fc.array(message, { maxLength: 8 });

function framed(list: readonly Message[]): Buffer {
  return Buffer.concat(list.map((m) => grpcFrame(m.payload, m.compressed)));
}

/** A prefix announcing `length` bytes with `flag`, as written on the wire. */
function prefix(flag: number, length: number): Buffer {
  const bytes = Buffer.alloc(5);
  bytes.writeUInt8(flag, 0);
  bytes.writeUInt32BE(length, 1);
  return bytes;
}

/** How a body reaches the agent: a byte per DATA frame, all in one, or cut at arbitrary places. */
type Chunking = { kind: "one byte" } | { kind: "whole" } | { kind: "cuts"; cuts: number[] };
const chunking: fc.Arbitrary<Chunking> = fc.oneof(
  fc.constant({ kind: "one byte" as const }),
  fc.constant({ kind: "whole" as const }),
  fc.record({ kind: fc.constant("cuts" as const), cuts: fc.array(fc.nat(), { maxLength: 12 }) }),
);

/** The body as pieces; cuts at the same place make empty pieces (the reader sees those only here). */
function cut(body: Buffer, how: Chunking): Buffer[] {
  if (how.kind === "whole") return [body];
  if (how.kind === "one byte") return [...body].map((byte) => Buffer.from([byte]));
  const at = [0, ...how.cuts.map((c) => c % (body.length + 1)).sort((a, b) => a - b), body.length];
  return at.slice(1).map((end, i) => body.subarray(at[i] ?? 0, end));
}

const view = (list: readonly { compressed: boolean; payload: Uint8Array }[]) =>
  list.map((m) => ({ compressed: m.compressed, payload: Buffer.from(m.payload).toString("hex") }));

interface Outcome {
  readonly messages: ReceivedMessage[];
  readonly error?: GrpcError;
  /** Bytes pushed before the piece that failed (all of them when none failed). */
  readonly pushedBefore: number;
  readonly midMessage: boolean;
}

/** Pushes the pieces through a fresh reader until one fails; anything thrown but a GrpcError fails the test. */
function read(pieces: readonly Buffer[], limit = LIMIT): Outcome {
  const reader = new MessageReader(limit);
  const out: ReceivedMessage[] = [];
  let pushed = 0;
  for (const piece of pieces) {
    try {
      out.push(...reader.push(piece));
    } catch (error) {
      if (!(error instanceof GrpcError)) throw error;
      return { messages: out, error, pushedBefore: pushed, midMessage: reader.midMessage };
    }
    pushed += piece.length;
  }
  return { messages: out, pushedBefore: pushed, midMessage: reader.midMessage };
}

/** Messages the reader gave before failing: the first ones sent, in order (a failing piece yields none). */
function expectLeadingMessages(outcome: Outcome, sent: readonly Message[]): void {
  expect(view(outcome.messages)).toEqual(view(sent.slice(0, outcome.messages.length)));
}

// ---- The reader ------------------------------------------------------------------------------------------

describe("the gRPC message reader, however the body is cut", () => {
  it("gives back exactly the messages framed, flags and payloads, with nothing left over", () => {
    fc.assert(
      fc.property(messages, chunking, (sent, how) => {
        const outcome = read(cut(framed(sent), how));
        expect(outcome.error).toBeUndefined();
        expect(view(outcome.messages)).toEqual(view(sent));
        expect(outcome.midMessage).toBe(false);
      }),
      SETTINGS,
    );
  });

  it("refuses a length over the limit with RESOURCE_EXHAUSTED once its prefix is in, before any of its body", () => {
    const oversize = fc.record({
      before: messages,
      flag: fc.constantFrom(0, 1),
      length: fc.oneof(fc.integer({ min: LIMIT + 1, max: MAX_UINT32 }), fc.constantFrom(LIMIT + 1, MAX_UINT32)),
      body: fc.uint8Array({ maxLength: 64 }),
      how: chunking,
    });
    fc.assert(
      fc.property(oversize, ({ before, flag, length, body, how }) => {
        const head = framed(before);
        const outcome = read(cut(Buffer.concat([head, prefix(flag, length), body]), how));
        expect(outcome.error?.code).toBe(GrpcStatus.RESOURCE_EXHAUSTED);
        expect(outcome.error?.message).toBe(`message of ${length} bytes exceeds the limit of ${LIMIT}`);
        // It failed on the piece that completed the prefix: no byte of the body was buffered.
        expect(outcome.pushedBefore).toBeLessThan(head.length + 5);
        expectLeadingMessages(outcome, before);
      }),
      SETTINGS,
    );
  });

  it("refuses an unknown flag with INTERNAL once its prefix is in", () => {
    const badFlag = fc.record({
      before: messages,
      flag: fc.integer({ min: 2, max: 255 }),
      length: fc.integer({ min: 0, max: MAX_UINT32 }),
      how: chunking,
    });
    fc.assert(
      fc.property(badFlag, ({ before, flag, length, how }) => {
        const head = framed(before);
        const outcome = read(cut(Buffer.concat([head, prefix(flag, length)]), how));
        expect(outcome.error?.code).toBe(GrpcStatus.INTERNAL);
        expect(outcome.error?.message).toBe(`invalid message flag ${flag}`);
        expect(outcome.pushedBefore).toBeLessThan(head.length + 5);
        expectLeadingMessages(outcome, before);
      }),
      SETTINGS,
    );
  });

  it("waits, mid-message, for a body cut short: every whole message out, no error", () => {
    const truncated = fc.record({ before: messages, last: message, keep: fc.nat(), how: chunking });
    fc.assert(
      fc.property(truncated, ({ before, last, keep, how }) => {
        const lastFrame = grpcFrame(last.payload, last.compressed);
        const kept = 1 + (keep % (lastFrame.length - 1)); // at least a byte, never all of it
        const outcome = read(cut(Buffer.concat([framed(before), lastFrame.subarray(0, kept)]), how));
        expect(outcome.error).toBeUndefined();
        expect(view(outcome.messages)).toEqual(view(before));
        expect(outcome.midMessage).toBe(true);
      }),
      SETTINGS,
    );
  });

  it("reads arbitrary bytes into messages or a clean error, the same whatever the cuts", () => {
    // Mostly garbage, sometimes messages with garbage after them, sometimes a small announced length.
    const bytes = fc.oneof(
      fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)),
      fc.tuple(messages, fc.uint8Array({ maxLength: 40 })).map(([m, tail]) => Buffer.concat([framed(m), tail])),
      fc
        .tuple(fc.constantFrom(0, 1), fc.integer({ min: 0, max: 600 }), fc.uint8Array({ maxLength: 600 }))
        .map(([flag, length, rest]) => Buffer.concat([prefix(flag, length), rest])),
    );
    fc.assert(
      fc.property(bytes, chunking, (body, how) => {
        const whole = read([body]);
        const pieces = read(cut(body, how));
        if (whole.error) {
          expect([GrpcStatus.INTERNAL, GrpcStatus.RESOURCE_EXHAUSTED]).toContain(whole.error.code);
          expect(pieces.error?.message).toBe(whole.error.message);
          // The bad prefix is the same one: messages before it are the same, up to what its piece held.
          expect(view(whole.messages)).toEqual(view(pieces.messages.slice(0, whole.messages.length)));
        } else {
          expect(pieces.error).toBeUndefined();
          expect(view(pieces.messages)).toEqual(view(whole.messages));
          expect(pieces.midMessage).toBe(whole.midMessage);
        }
        for (const m of pieces.messages) expect(m.payload.length).toBeLessThanOrEqual(LIMIT);
      }),
      SETTINGS,
    );
  });
});

// ---- The ingestion server, on a loopback socket ---------------------------------------------------------

let running: RunningIngestion;
let session: ClientHttp2Session;

beforeAll(async () => {
  running = await startIngestion({ maxMessageBytes: LIMIT });
  session = await h2Connect(running.port);
});

afterAll(async () => {
  session.destroy();
  running.registry.disconnectAll("shutdown");
  await running.server.stop();
});

interface Answer {
  readonly headers: IncomingHttpHeaders;
  readonly trailersOnly: boolean;
  readonly body: Buffer;
  readonly status: number | undefined;
  readonly message: string | undefined;
}

/**
 * Sends the body as the given pieces, each in its own DATA frame (awaiting each write's callback keeps
 * node:http2 from merging them), and reads the whole answer; fails if none comes within 2 s.
 */
function send(method: string, pieces: readonly Buffer[], extra: OutgoingHttpHeaders = {}): Promise<Answer> {
  const nonEmpty = pieces.filter((piece) => piece.length > 0);
  return new Promise((resolve, reject) => {
    const stream = session.request(envoyHeaders(method, extra), { endStream: nonEmpty.length === 0 });
    const timer = setTimeout(() => {
      stream.close();
      reject(new Error(`no answer to ${method} within 2 s`));
    }, 2_000);
    let headers: IncomingHttpHeaders = {};
    let trailers: IncomingHttpHeaders | undefined;
    const body: Buffer[] = [];
    stream.on("response", (h) => {
      headers = h;
    });
    stream.on("trailers", (t) => {
      trailers = t;
    });
    stream.on("data", (chunk: Buffer) => body.push(chunk));
    stream.on("error", () => {}); // the agent may stop the upload once it has answered (RST_STREAM NO_ERROR)
    stream.on("close", () => {
      clearTimeout(timer);
      const source = trailers ?? headers;
      const status = source["grpc-status"];
      const message = source["grpc-message"];
      resolve({
        headers,
        trailersOnly: trailers === undefined,
        body: Buffer.concat(body),
        status: status === undefined ? undefined : Number(status),
        message: typeof message === "string" ? decodeURIComponent(message) : undefined,
      });
    });
    void (async () => {
      for (const piece of nonEmpty) {
        if (stream.destroyed) return;
        await new Promise((written) => stream.write(piece, written));
      }
      if (!stream.destroyed) stream.end();
    })();
  });
}

/** The rejections counted while `run` ran. */
async function rejectedDuring<T>(run: () => Promise<T>): Promise<{ result: T; rejected: RejectionReason[] }> {
  const before = running.telemetry.rejected.length;
  const result = await run();
  return { result, rejected: running.telemetry.rejected.slice(before) };
}

/** The reason the agent counts each refusal under (docs/metrics.md, `leakagent_rejected_total`). */
const REASON_OF_STATUS: Partial<Record<GrpcStatus, RejectionReason>> = {
  [GrpcStatus.RESOURCE_EXHAUSTED]: "message_too_large",
  [GrpcStatus.INTERNAL]: "malformed",
  [GrpcStatus.INVALID_ARGUMENT]: "malformed",
  [GrpcStatus.UNIMPLEMENTED]: "unimplemented",
  [GrpcStatus.UNAUTHENTICATED]: "unknown_deployment",
};

const uint64 = fc.oneof(fc.constantFrom(0n, 1n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));

describe("the ingestion server, however a call's body is cut into DATA frames", () => {
  it("answers Ping with its timestamp, compressed or not", async () => {
    await fc.assert(
      fc.asyncProperty(uint64, fc.boolean(), chunking, async (timestamp, gzip, how) => {
        const payload = PingMessage.encode({ timestamp }).finish();
        const body = gzip ? grpcFrame(gzipSync(payload), true) : grpcFrame(payload);
        const { result, rejected } = await rejectedDuring(() =>
          send("Ping", cut(body, how), gzip ? { "grpc-encoding": "gzip" } : {}),
        );
        expect(result.status).toBe(GrpcStatus.OK);
        expect(grpcMessages(result.body).map((m) => PingMessage.decode(m).timestamp)).toEqual([timestamp]);
        expect(rejected).toEqual([]);
      }),
      SOCKET_SETTINGS,
    );
  });

  it("observes a MatchData report as the generated codec reads it", async () => {
    const fields = fc.record({ token: fc.string({ maxLength: 40 }), policyPath: fc.string({ maxLength: 80 }) });
    await fc.assert(
      fc.asyncProperty(fields, chunking, async ({ token, policyPath }, how) => {
        const payload = MatchDataRequest.encode(currentTransaction({ apiKey: "alpha", token, policyPath })).finish();
        const observed = running.telemetry.transactions.length;
        const answer = await send("MatchData", cut(grpcFrame(payload), how));
        expect(answer.status).toBe(GrpcStatus.OK);
        expect(running.telemetry.transactions.slice(observed)).toEqual([
          observeTransaction("alpha", MatchDataRequest.decode(payload)),
        ]);
      }),
      SOCKET_SETTINGS,
    );
  });

  it("answers length prefixes that lie with the documented status, trailers-only, and counts them", async () => {
    const METHODS = ["Ping", "MatchData", "UpdatePolicy", "HealthCheck"];
    const lie = fc.oneof(
      // The prefix announces more than the body holds; then the stream ends.
      fc.tuple(fc.uint8Array({ maxLength: 200 }), fc.integer({ min: 1, max: LIMIT })).map(([payload, more]) => ({
        body: Buffer.concat([prefix(0, Math.min(LIMIT, payload.length + more)), payload]),
        status: GrpcStatus.INTERNAL,
        message: "stream ended mid-message",
      })),
      fc.integer({ min: LIMIT + 1, max: MAX_UINT32 }).map((length) => ({
        body: prefix(0, length),
        status: GrpcStatus.RESOURCE_EXHAUSTED,
        message: `message of ${length} bytes exceeds the limit of ${LIMIT}`,
      })),
      fc.integer({ min: 2, max: 255 }).map((flag) => ({
        body: prefix(flag, 0),
        status: GrpcStatus.INTERNAL,
        message: `invalid message flag ${flag}`,
      })),
      fc.uint8Array({ maxLength: 50 }).map((payload) => ({
        body: grpcFrame(payload, true), // compressed, and no grpc-encoding says how
        status: GrpcStatus.UNIMPLEMENTED,
        message: 'message compression "identity" is not supported',
      })),
    );
    await fc.assert(
      fc.asyncProperty(fc.constantFrom(...METHODS), lie, chunking, async (method, { body, status, message }, how) => {
        const { result, rejected } = await rejectedDuring(() => send(method, cut(body, how)));
        expect(result.status).toBe(status);
        expect(result.message).toBe(message);
        expect(result.trailersOnly).toBe(true);
        expect(result.headers[":status"]).toBe(200);
        expect(rejected).toEqual([REASON_OF_STATUS[status]]);
      }),
      SOCKET_SETTINGS,
    );
  });

  it("answers any body, to any method, with a gRPC status it counts, and keeps serving", async () => {
    const body = fc.oneof(
      fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)),
      fc
        .array(fc.uint8Array({ maxLength: 60 }), { maxLength: 3 })
        .map((list) => Buffer.concat(list.map((b) => grpcFrame(b)))),
    );
    const method = fc.constantFrom("Ping", "MatchData", "UpdatePolicy", "HealthCheck");
    await fc.assert(
      fc.asyncProperty(method, body, chunking, async (name, bytes, how) => {
        const { result, rejected } = await rejectedDuring(() => send(name, cut(bytes, how)));
        expect(result.status).toBeDefined();
        const status = result.status as GrpcStatus;
        if (status === GrpcStatus.OK) {
          // Only the unary methods that need no deployment can succeed on random bytes.
          expect(["Ping", "HealthCheck"]).toContain(name);
          expect(grpcMessages(result.body)).toHaveLength(1);
          expect(rejected).toEqual([]);
        } else {
          expect(REASON_OF_STATUS[status]).toBeDefined();
          expect(rejected).toEqual([REASON_OF_STATUS[status]]);
        }
      }),
      SOCKET_SETTINGS,
    );
    const ping = await send("Ping", [grpcFrame(PingMessage.encode({ timestamp: 7n }).finish())]);
    expect(grpcMessages(ping.body).map((m) => PingMessage.decode(m).timestamp)).toEqual([7n]);
    expect(running.server.open.sessions).toBe(1);
  });
});
