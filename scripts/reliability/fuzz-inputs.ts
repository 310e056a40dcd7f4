import { type ClientHttp2Session, constants as h2 } from "node:http2";
import { connect as connectTcp } from "node:net";
import { gzipSync } from "node:zlib";
import { MatchDataRequest, PingMessage, UpdatePolicyRequest } from "../../src/generated/leaksignal";
import type { Rng } from "./rng";
import {
  FLAG,
  FRAME,
  grpcFrame,
  grpcStatusName,
  HTTP2_PREFACE,
  h2ErrorName,
  h2Frame,
  hpackBlock,
  readFrames,
} from "./wire";

// The malformed inputs the fuzz script throws at the agent, one family per kind. Each input is drawn from its
// own seeded generator and resolves to a short label of how the agent answered ("http 400", "grpc INTERNAL",
// "h2 GOAWAY PROTOCOL_ERROR", "closed"...). A label starting with "FAILED" is a wrong answer to a valid call.

export interface FuzzTarget {
  readonly port: number;
  /** One of a few shared HTTP/2 client sessions, reconnected when the agent has closed it. */
  session(rng: Rng): ClientHttp2Session;
  /** A session of its own, for one call. */
  freshSession(): ClientHttp2Session;
  /** Credentials that open a deployment: a name (name-as-key) and a secret api key. */
  readonly credentials: readonly string[];
  /** LS_MAX_MESSAGE_BYTES the agent runs with. */
  readonly maxMessageBytes: number;
}

export interface InputKind {
  readonly name: string;
  readonly weight: number;
  run(rng: Rng, target: FuzzTarget): Promise<string>;
}

const METHODS = ["MatchData", "UpdatePolicy", "HealthCheck", "Ping"] as const;
const grpcPath = (method: string) => `/leaksignal.Leaksignal/${method}`;

const GRPC_HEADERS = (method: string) => ({
  ":method": "POST",
  ":path": grpcPath(method),
  "content-type": "application/grpc",
  te: "trailers",
});

// ---------------------------------------------------------------------------------------------------------------
// Raw TCP: bytes exactly as written, answers read back.

interface Exchange {
  readonly data: Buffer;
  /** How it ended: "answered" (the wanted answer arrived), "closed", "reset", "timeout" or "error <code>". */
  readonly how: string;
}

function exchange(
  port: number,
  chunks: readonly Buffer[],
  options: { gapMs?: number; end?: boolean; capMs: number; answered?: (data: Buffer) => boolean },
): Promise<Exchange> {
  return new Promise((resolve) => {
    const socket = connectTcp({ host: "127.0.0.1", port });
    const received: Buffer[] = [];
    let finished = false;
    const finish = (how: string) => {
      if (finished) return;
      finished = true;
      clearTimeout(timer);
      socket.destroy();
      resolve({ data: Buffer.concat(received), how });
    };
    const timer = setTimeout(() => finish("timeout"), options.capMs);
    socket.on("data", (chunk: Buffer) => {
      received.push(chunk);
      if (options.answered?.(Buffer.concat(received))) finish("answered");
    });
    socket.on("error", (error: NodeJS.ErrnoException) =>
      finish(error.code === "ECONNRESET" ? "reset" : `error ${error.code ?? error.message}`),
    );
    socket.on("close", () => finish("closed"));
    socket.on("connect", async () => {
      for (const chunk of chunks) {
        if (options.gapMs) await sleep(options.gapMs);
        if (finished || socket.destroyed) return;
        socket.write(chunk);
      }
      if (options.end) socket.end();
    });
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Complete HTTP/1.x responses at the start of `data` (status line, headers, Content-Length body). */
function http1Responses(data: Buffer): number[] {
  const text = data.toString("latin1");
  const statuses: number[] = [];
  let offset = 0;
  for (;;) {
    const match = /^HTTP\/1\.[01] (\d{3})/.exec(text.slice(offset));
    const headerEnd = text.indexOf("\r\n\r\n", offset);
    if (!match || headerEnd < 0) return statuses;
    const length = /\r\ncontent-length: *(\d+)/i.exec(text.slice(offset, headerEnd));
    const end = headerEnd + 4 + (length ? Number(length[1]) : 0);
    if (end > text.length) return statuses;
    statuses.push(Number(match[1]));
    offset = end;
  }
}

async function http1(port: number, chunks: readonly Buffer[], expected = 1, gapMs = 0, capMs = 2_000) {
  const answer = await exchange(port, chunks, {
    gapMs,
    capMs,
    answered: (data) => http1Responses(data).length >= expected,
  });
  const statuses = http1Responses(answer.data);
  if (statuses.length > 0) return `http ${statuses.join("+")}`;
  if (answer.data.length > 0) return `unparsed answer, ${answer.how}`;
  return answer.how;
}

// ---------------------------------------------------------------------------------------------------------------
// Raw HTTP/2: a preface, then frames as written.

const MARKER = Buffer.from("fuzzping");

function isTerminal(frame: { type: number; flags: number; streamId: number; payload: Buffer }): boolean {
  if (frame.type === FRAME.GOAWAY || frame.type === FRAME.RST_STREAM) return true;
  if ((frame.type === FRAME.HEADERS || frame.type === FRAME.DATA) && frame.flags & FLAG.END_STREAM) return true;
  return frame.type === FRAME.PING && (frame.flags & FLAG.ACK) !== 0 && frame.payload.equals(MARKER);
}

/**
 * Sends the client preface, an empty SETTINGS and `frames`, then a PING: the server answers it once it has
 * processed everything before, so "PING answered" means the frames were accepted or ignored without complaint.
 */
async function h2Raw(
  port: number,
  frames: readonly Buffer[],
  options: { ping?: boolean; capMs?: number } = {},
): Promise<string> {
  const ping = options.ping ?? true;
  const chunks = [HTTP2_PREFACE, h2Frame(FRAME.SETTINGS, 0, 0), ...frames];
  if (ping) chunks.push(h2Frame(FRAME.PING, 0, 0, MARKER));
  const answer = await exchange(port, [Buffer.concat(chunks)], {
    capMs: options.capMs ?? 1_000,
    answered: (data) => readFrames(data).some(isTerminal),
  });
  const received = readFrames(answer.data);
  const goaway = received.find((f) => f.type === FRAME.GOAWAY);
  if (goaway && goaway.payload.length >= 8) return `h2 GOAWAY ${h2ErrorName(goaway.payload.readUInt32BE(4))}`;
  const reset = received.find((f) => f.type === FRAME.RST_STREAM);
  if (reset && reset.payload.length >= 4) return `h2 RST_STREAM ${h2ErrorName(reset.payload.readUInt32BE(0))}`;
  if (received.some((f) => f.type === FRAME.HEADERS && f.streamId > 0)) return "h2 response";
  if (received.some((f) => f.type === FRAME.PING && f.flags & FLAG.ACK)) return "h2 PING answered";
  if (received.length === 0 && answer.data.length > 0) return `non-h2 answer, ${answer.how}`;
  return answer.how;
}

function randomFrame(rng: Rng): Buffer {
  const type = rng.chance(0.85) ? rng.int(10) : rng.int(256);
  const streamId = rng.pick([0, 1, 1, 3, 2, 0x7fffffff, rng.int(2 ** 31), 2 ** 31 + 1]);
  const payload = rng.bytes(rng.pick([0, 1, 4, 5, 8, 9, rng.int(64), rng.int(600)]));
  const declared = rng.chance(0.2) ? rng.int(2 ** 24) : undefined;
  return h2Frame(type, rng.int(256), streamId, payload, declared);
}

const settingsEntry = (id: number, value: number) => {
  const entry = Buffer.alloc(6);
  entry.writeUInt16BE(id, 0);
  entry.writeUInt32BE(value >>> 0, 2);
  return entry;
};

const u32 = (value: number) => {
  const out = Buffer.alloc(4);
  out.writeUInt32BE(value >>> 0, 0);
  return out;
};

/** Frames that are each wrong in one known way (RFC 9113). */
function badControlFrame(rng: Rng): Buffer[] {
  switch (rng.int(14)) {
    case 0:
      return [h2Frame(FRAME.SETTINGS, 0, 0, rng.bytes(rng.pick([1, 5, 7, 11])))]; // length not a multiple of 6
    case 1:
      return [h2Frame(FRAME.SETTINGS, 0, 0, settingsEntry(2, rng.between(2, 2 ** 32 - 1)))]; // ENABLE_PUSH > 1
    case 2:
      return [h2Frame(FRAME.SETTINGS, 0, 0, settingsEntry(4, 2 ** 31 + rng.int(2 ** 30)))]; // window too large
    case 3:
      return [h2Frame(FRAME.SETTINGS, 0, 0, settingsEntry(5, rng.int(16_384)))]; // MAX_FRAME_SIZE too small
    case 4:
      return [h2Frame(FRAME.SETTINGS, FLAG.ACK, 0, rng.bytes(6))]; // ACK with a payload
    case 5:
      return [h2Frame(FRAME.PING, 0, rng.pick([0, 1]), rng.bytes(rng.pick([0, 7, 9])))]; // wrong length or stream
    case 6:
      return [h2Frame(FRAME.WINDOW_UPDATE, 0, rng.pick([0, 1]), u32(0))]; // zero increment
    case 7:
      return [
        h2Frame(FRAME.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1)),
        h2Frame(FRAME.WINDOW_UPDATE, 0, 0, u32(2 ** 31 - 1)),
      ]; // window overflow
    case 8:
      return [h2Frame(FRAME.DATA, 0, 16_384, rng.bytes(20_000))]; // larger than MAX_FRAME_SIZE
    case 9:
      return [h2Frame(FRAME.CONTINUATION, FLAG.END_HEADERS, 1, rng.bytes(8))]; // no HEADERS before
    case 10:
      return [h2Frame(FRAME.PRIORITY, 0, 1, Buffer.from([0, 0, 0, 1, 16]))]; // depends on itself
    case 11:
      return [h2Frame(FRAME.RST_STREAM, 0, rng.pick([1, 5, 0]), u32(8))]; // on an idle stream or stream 0
    case 12:
      return [h2Frame(FRAME.PUSH_PROMISE, FLAG.END_HEADERS, 1, rng.bytes(8))]; // clients may not push
    default:
      return [h2Frame(FRAME.DATA, FLAG.END_STREAM, 0, rng.bytes(10))]; // DATA on stream 0
  }
}

/** A header block for a gRPC call, broken in one of several ways. */
function badHeaderBlock(rng: Rng): { frames: Buffer[]; label: string } {
  const base: Array<[string, string]> = [
    [":method", "POST"],
    [":scheme", "http"],
    [":path", grpcPath(rng.pick(METHODS))],
    [":authority", "leakagent"],
    ["content-type", "application/grpc"],
    ["te", "trailers"],
  ];
  const headers = (list: Array<[string, string]>, flags = FLAG.END_HEADERS | FLAG.END_STREAM) => [
    h2Frame(FRAME.HEADERS, flags, 1, hpackBlock(list)),
  ];
  switch (rng.int(12)) {
    case 0:
      return { frames: [h2Frame(FRAME.HEADERS, FLAG.END_HEADERS, 1, rng.bytes(rng.between(1, 64)))], label: "hpack" };
    case 1:
      return { frames: headers([...base, ["Content-Type", "application/grpc"]]), label: "uppercase" };
    case 2:
      return { frames: headers(base.filter(([name]) => name !== rng.pick([":method", ":path"]))), label: "missing" };
    case 3:
      return { frames: headers([["x-first", "1"], ...base]), label: "pseudo-after-regular" };
    case 4:
      return { frames: headers([...base, ["connection", "keep-alive"]]), label: "connection-header" };
    case 5:
      return { frames: headers([...base, [":path", "/again"]]), label: "duplicate-pseudo" };
    case 6:
      return { frames: headers([...base, ["x-bad", `a${rng.pick(["\0", "\r", "\n"])}b`]]), label: "bad-value" };
    case 7:
      return { frames: headers([...base, ["x-big", "v".repeat(rng.between(20_000, 70_000))]]), label: "huge" };
    case 8:
      return { frames: headers(base, 0), label: "no-continuation" }; // the server waits for CONTINUATION
    case 9:
      return {
        frames: [
          ...headers(base, FLAG.END_HEADERS | FLAG.END_STREAM),
          h2Frame(FRAME.DATA, FLAG.END_STREAM, 1, grpcFrame(rng.bytes(8))),
        ],
        label: "data-after-end",
      };
    case 10:
      return {
        frames: [
          ...headers(base, FLAG.END_HEADERS),
          h2Frame(FRAME.DATA, FLAG.END_STREAM, 1, grpcFrame(rng.bytes(rng.int(100)))),
        ],
        label: "garbage-body",
      };
    default:
      return {
        frames: [
          ...headers([...base, ["content-length", String(rng.between(1, 99))]], FLAG.END_HEADERS),
          h2Frame(FRAME.DATA, FLAG.END_STREAM, 1),
        ],
        label: "content-length-mismatch",
      };
  }
}

// ---------------------------------------------------------------------------------------------------------------
// gRPC over a real HTTP/2 client: valid HTTP/2, wrong gRPC.

interface CallOptions {
  /** Cancel the call once the first response message arrives (policy streams stay open otherwise). */
  cancelOnData?: boolean;
  /** Reset the stream right after writing, before the agent answers. */
  resetAfterWrite?: boolean;
}

/** One request on a shared session; resolves to "grpc <STATUS>", "http <status>", "reset <code>" or "closed". */
function call(
  target: FuzzTarget,
  rng: Rng,
  headers: Record<string, string>,
  body: readonly Buffer[],
  options: CallOptions = {},
): Promise<string> {
  return new Promise((resolve) => {
    let label: string | undefined;
    let stream: ReturnType<ClientHttp2Session["request"]>;
    // Node's HTTP/2 client can spin (and run out of memory) when a stream it resets shares a session with
    // streams still writing bodies larger than the flow-control window: give those calls a session each.
    const size = body.reduce((sum, chunk) => sum + chunk.length, 0);
    const own = options.resetAfterWrite || size > 16 * 1024 ? target.freshSession() : undefined;
    try {
      stream = (own ?? target.session(rng)).request(headers, { endStream: false });
    } catch (error) {
      resolve(`client session unusable: ${(error as NodeJS.ErrnoException).code ?? error}`);
      return;
    }
    const timer = setTimeout(() => {
      // The connection may be stalled as a whole (flow control): drop it, as a proxy would reconnect.
      resolve(label ?? "no answer in 5 s");
      stream.session?.destroy();
    }, 5_000);
    stream.on("response", (response) => {
      const status = response["grpc-status"];
      if (status !== undefined) label ??= `grpc ${grpcStatusName(String(status))}`;
      else if (response[":status"] !== 200) label ??= `http ${response[":status"]}`;
    });
    stream.on("trailers", (trailers) => {
      const status = trailers["grpc-status"];
      label ??= status === undefined ? "trailers without grpc-status" : `grpc ${grpcStatusName(String(status))}`;
    });
    stream.on("data", () => {
      if (options.cancelOnData && label === undefined) {
        label = "policy received";
        stream.close(h2.NGHTTP2_CANCEL);
      }
    });
    stream.on("error", () => {});
    stream.on("close", () => {
      clearTimeout(timer);
      own?.destroy();
      if (label === undefined && stream.rstCode && stream.rstCode !== h2.NGHTTP2_NO_ERROR) {
        label = `reset ${h2ErrorName(stream.rstCode)}`;
      }
      resolve(label ?? "closed");
    });
    for (const chunk of body) stream.write(chunk);
    if (options.resetAfterWrite) {
      label = "reset by client";
      stream.close(h2.NGHTTP2_CANCEL);
    } else stream.end();
  });
}

/**
 * A well-formed report with odd values. Fields that become metric labels (category, path, token, ip, header
 * names) come from small fixed sets: unbounded label values are a cardinality question with its own tests, and
 * would otherwise make the agent's RSS here measure series count rather than leaks. Everything else is random:
 * huge, zero and reversed timestamps, sizes, header bytes, matched values, match counts.
 * `maxMatches` keeps valid calls under the agent's message limit.
 */
function randomMatchData(rng: Rng, apiKey: string, maxMatches = 2_000): MatchDataRequest {
  const big = () => rng.pick([0n, 1n, 2n ** 63n, 2n ** 64n - 1n, BigInt(rng.int(2 ** 31)) * 1_000_000n]);
  const text = (max: number) => rng.text(rng.int(max));
  const matches = () =>
    Array.from({ length: rng.pick([0, 1, 3, rng.int(maxMatches)]) }, () => ({
      categoryName: rng.pick(["email", "ssn", "routing", "not_in_policy"]),
      matcherPath: text(40),
      matchedValue: text(20),
    }));
  const component = () => ({
    timeHeaderStart: big(),
    timeBodyStart: big(),
    timeBodyEnd: big(),
    headerMatches: Array.from({ length: rng.int(3) }, () => ({
      name: rng.pick(["authorization", "cookie", ":path", "x-custom"]),
      timeHeaderStart: big(),
      timeHeaderEnd: big(),
      matches: matches().slice(0, 10),
      headerSize: big(),
      header: rng.bytes(rng.int(64)),
      categoryPerformanceUs: {},
    })),
    bodyMatches: matches(),
    bodySize: big(),
    categoryPerformanceUs: { email: big() },
  });
  return MatchDataRequest.fromPartial({
    apiKey,
    deploymentName: text(10),
    policyId: text(16),
    timeRequestStart: big(),
    timeResponseStart: big(),
    timeResponseBodyStart: big(),
    timeResponseBodyEnd: big(),
    requestHeaders: Array.from({ length: rng.int(5) }, () => ({ name: text(20), value: text(50) })),
    matches: matches(),
    bodySize: big(),
    body: rng.chance(0.2) ? rng.bytes(rng.int(500)) : undefined,
    policyPath: rng.pick(["api.example.com/users", "shop/cart", "", "/"]),
    commit: text(12),
    token: rng.pick(["", "user-1", "user-2", "svc"]),
    ip: rng.pick(["10.1.2.3", "::1", "not-an-ip", ""]),
    request: rng.chance(0.5) ? component() : undefined,
    response: rng.chance(0.5) ? component() : undefined,
  });
}

function validRequest(rng: Rng, method: string, target: FuzzTarget): Buffer {
  const apiKey = rng.pick(target.credentials);
  switch (method) {
    case "MatchData":
      return Buffer.from(MatchDataRequest.encode(randomMatchData(rng, apiKey, 100)).finish());
    case "UpdatePolicy":
      return Buffer.from(
        UpdatePolicyRequest.encode({ apiKey, deploymentName: "", commit: "fuzz", semver: "0.0.0" }).finish(),
      );
    case "Ping":
      return Buffer.from(PingMessage.encode({ timestamp: BigInt(rng.int(2 ** 31)) }).finish());
    default:
      return Buffer.alloc(0);
  }
}

// ---------------------------------------------------------------------------------------------------------------
// HTTP/1.1: smuggling attempts and malformed requests.

const SMUGGLING: ReadonlyArray<{ name: string; request: string; expected?: number }> = [
  {
    name: "CL+TE",
    request:
      "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 44\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n",
  },
  {
    name: "TE+CL",
    request:
      "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n5c\r\nGPOST / HTTP/1.1\r\n\r\n0\r\n\r\n",
  },
  {
    name: "duplicate CL",
    request: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello!",
  },
  { name: "CL list", request: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\nhello!" },
  { name: "obs-fold TE", request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" },
  { name: "obs-fold header", request: "GET / HTTP/1.1\r\nHost: a\r\nX-Folded: one\r\n two\r\n\r\n" },
  { name: "bare LF", request: "GET / HTTP/1.1\nHost: a\n\n" },
  { name: "bare CR", request: "GET / HTTP/1.1\rHost: a\r\r\n\r\n" },
  { name: "TE xchunked", request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" },
  {
    name: "TE chunked, identity",
    request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
  },
  { name: "space before colon", request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n" },
  {
    name: "duplicate TE",
    request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n",
  },
  {
    name: "chunk size overflow",
    request: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\n",
  },
  { name: "negative CL", request: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n" },
  { name: "plus CL", request: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +3\r\n\r\nabc" },
  { name: "huge CL", request: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n" },
  { name: "NUL in header", request: "GET / HTTP/1.1\r\nHost: a\r\nX-A: b\0c\r\n\r\n" },
  { name: "header without colon", request: "GET / HTTP/1.1\r\nHost: a\r\nno-colon\r\n\r\n" },
  { name: "HTTP/9.9", request: "GET / HTTP/9.9\r\nHost: a\r\n\r\n" },
  { name: "absolute URI", request: "GET http://elsewhere/ HTTP/1.1\r\nHost: a\r\n\r\n" },
  { name: "pipelined", request: "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /nope HTTP/1.1\r\nHost: a\r\n\r\n", expected: 2 },
  {
    name: "h2c upgrade",
    request:
      "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n",
  },
];

function mutate(rng: Rng, text: string): Buffer {
  const bytes = Buffer.from(text, "latin1");
  for (let n = rng.between(1, 4); n > 0; n--) {
    const at = rng.int(bytes.length);
    bytes[at] = rng.pick([0, 10, 13, 32, 58, rng.int(256)]);
  }
  return bytes;
}

// ---------------------------------------------------------------------------------------------------------------

export const INPUT_KINDS: readonly InputKind[] = [
  {
    name: "random bytes",
    weight: 10,
    run: (rng, t) => http1(t.port, [rng.bytes(rng.between(1, 2_048))], 1, 0, 500),
  },
  {
    name: "truncated HTTP/2 preface",
    weight: 4,
    async run(rng, t) {
      const prefix = HTTP2_PREFACE.subarray(0, rng.between(1, HTTP2_PREFACE.length - 1));
      const chunks = rng.chance(0.5) ? [prefix, rng.bytes(rng.between(1, 40))] : [prefix];
      const answer = await exchange(t.port, chunks, { end: rng.chance(0.5), capMs: 300 });
      return answer.how === "timeout" ? "still waiting after 300 ms" : answer.how;
    },
  },
  {
    name: "HTTP/2 garbage frames",
    weight: 12,
    run: (rng, t) =>
      h2Raw(
        t.port,
        Array.from({ length: rng.between(1, 5) }, () => randomFrame(rng)),
      ),
  },
  { name: "HTTP/2 bad control frames", weight: 5, run: (rng, t) => h2Raw(t.port, badControlFrame(rng)) },
  {
    name: "HTTP/2 bad header blocks",
    weight: 8,
    async run(rng, t) {
      const { frames, label } = badHeaderBlock(rng);
      // No PING here: the answer wanted is the stream's own (a reset, or a response that ends it).
      const capMs = label === "no-continuation" ? 200 : 1_000;
      const answer = await h2Raw(t.port, frames, { ping: false, capMs });
      return `${label}: ${answer === "timeout" ? `no answer in ${capMs} ms` : answer}`;
    },
  },
  {
    name: "gRPC length prefix lies",
    weight: 10,
    run(rng, t) {
      const method = rng.pick(METHODS);
      const payload = validRequest(rng, method, t);
      const body = (() => {
        switch (rng.int(5)) {
          case 0:
            return grpcFrame(payload, { declaredLength: payload.length + rng.between(1, 1_000) }); // longer than body
          case 1:
            return grpcFrame(payload, { declaredLength: t.maxMessageBytes + rng.between(1, 2 ** 31) }); // over limit
          case 2:
            return grpcFrame(payload).subarray(0, rng.between(1, 4)); // a partial prefix
          case 3:
            return grpcFrame(payload, { compressed: rng.between(2, 255) }); // no such flag
          default:
            return grpcFrame(payload, { compressed: 1 }); // compressed, but no grpc-encoding
        }
      })();
      return call(t, rng, GRPC_HEADERS(method), [body]);
    },
  },
  {
    name: "gRPC garbage protobuf",
    weight: 12,
    run(rng, t) {
      const method = rng.pick([...METHODS, "NoSuchMethod"]);
      const body = rng.chance(0.03)
        ? grpcFrame(rng.bytes(t.maxMessageBytes + rng.between(1, 1_000))) // really over the limit
        : grpcFrame(rng.bytes(rng.int(300)));
      const frames = rng.chance(0.1) ? [body, body] : [body];
      return call(t, rng, GRPC_HEADERS(method), frames, { cancelOnData: method === "UpdatePolicy" });
    },
  },
  {
    name: "wrong content type or method",
    weight: 6,
    async run(rng, t) {
      const method = rng.pick(METHODS);
      const headers: Record<string, string> = { ...GRPC_HEADERS(method) };
      const contentType = rng.pick([
        undefined,
        "application/json",
        "text/plain",
        "application/grpc-web",
        "application/grpcx",
        "APPLICATION/GRPC",
        "application/grpc+proto",
        "application/grpc; charset=x",
      ]);
      if (contentType === undefined) delete headers["content-type"];
      else headers["content-type"] = contentType;
      if (rng.chance(0.3)) headers[":method"] = rng.pick(["GET", "PUT", "DELETE", "OPTIONS"]);
      if (rng.chance(0.2)) headers[":path"] = rng.pick(["/", "/leaksignal.Leaksignal/", "/x/Ping", `/${rng.text(50)}`]);
      const body = headers[":method"] === "GET" ? [] : [grpcFrame(validRequest(rng, method, t))];
      const label = await call(t, rng, headers, body, { cancelOnData: method === "UpdatePolicy" });
      return label.startsWith("no answer") ? `${label} (${headers[":method"]} ${method} ${contentType})` : label;
    },
  },
  {
    name: "gRPC odd field values and headers",
    weight: 8,
    run(rng, t) {
      const key = rng.chance(0.5) ? rng.pick(t.credentials) : rng.text(rng.int(60));
      const payload = Buffer.from(MatchDataRequest.encode(randomMatchData(rng, key)).finish());
      const headers: Record<string, string> = { ...GRPC_HEADERS("MatchData") };
      if (rng.chance(0.3)) headers["grpc-timeout"] = rng.pick(["1n", "0S", "abc", "99999999H", "1", "-5m", "1u"]);
      let body = grpcFrame(payload);
      if (rng.chance(0.2)) {
        headers["grpc-encoding"] = rng.pick(["gzip", "deflate", "snappy", "identity"]);
        body = grpcFrame(rng.chance(0.5) ? gzipSync(payload) : rng.bytes(40), { compressed: 1 });
      }
      return call(t, rng, headers, [body]);
    },
  },
  {
    name: "client resets mid-call",
    weight: 4,
    run(rng, t) {
      const method = rng.pick(METHODS);
      const frame = grpcFrame(validRequest(rng, method, t));
      return call(t, rng, GRPC_HEADERS(method), [frame.subarray(0, rng.int(frame.length))], { resetAfterWrite: true });
    },
  },
  {
    name: "HTTP/1.1 smuggling",
    weight: 10,
    run(rng, t) {
      const attempt = rng.pick(SMUGGLING);
      return http1(t.port, [Buffer.from(attempt.request, "latin1")], attempt.expected ?? 1).then(
        (label) => `${attempt.name}: ${label}`,
      );
    },
  },
  {
    name: "HTTP/1.1 malformed",
    weight: 5,
    run(rng, t) {
      const request = rng.pick([
        "GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        `GET /${"a".repeat(rng.between(100, 20_000))} HTTP/1.1\r\nHost: a\r\n\r\n`,
        `GET / HTTP/1.1\r\nHost: a\r\nX-Big: ${"b".repeat(rng.between(10_000, 100_000))}\r\n\r\n`,
        `GET / HTTP/1.1\r\n${Array.from({ length: rng.between(100, 3_000) }, (_, i) => `X-${i}: v`).join("\r\n")}\r\n\r\n`,
        "GET /proxy/../../etc/passwd HTTP/1.1\r\nHost: a\r\n\r\n",
      ]);
      return http1(t.port, [mutate(rng, request)]);
    },
  },
  {
    name: "slow clients",
    weight: 1,
    async run(rng, t) {
      switch (rng.int(3)) {
        case 0: {
          // A probe dribbled a byte at a time: still answered.
          const request = Buffer.from("GET / HTTP/1.1\r\nHost: a\r\n\r\n");
          const bytes = [...request].map((byte) => Buffer.from([byte]));
          return `dribbled GET: ${await http1(t.port, bytes, 1, rng.between(5, 40), 5_000)}`;
        }
        case 1: {
          // The HTTP/2 preface dribbled: the agent must wait for all of it, then speak HTTP/2.
          const bytes = [...HTTP2_PREFACE, ...h2Frame(FRAME.SETTINGS, 0, 0)].map((byte) => Buffer.from([byte]));
          const answer = await exchange(t.port, bytes, {
            gapMs: rng.between(5, 30),
            capMs: 5_000,
            answered: (data) => readFrames(data).some((f) => f.type === FRAME.SETTINGS),
          });
          return `dribbled preface: ${answer.how === "answered" ? "h2 SETTINGS" : answer.how}`;
        }
        default: {
          // Connects and stalls mid-headers: the agent holds it (until its timeouts) without harm.
          const answer = await exchange(t.port, [Buffer.from("GET / HTTP/1.1\r\nHost: a\r\nX-Slow: ")], {
            capMs: rng.between(200, 1_500),
          });
          return `stalled headers: ${answer.how === "timeout" ? "held open" : answer.how}`;
        }
      }
    },
  },
  {
    name: "valid calls",
    weight: 6,
    async run(rng, t) {
      const method = rng.pick(METHODS);
      const payload = validRequest(rng, method, t);
      const label = await call(t, rng, GRPC_HEADERS(method), [grpcFrame(payload)], {
        cancelOnData: method === "UpdatePolicy",
      });
      const expected = method === "UpdatePolicy" ? "policy received" : "grpc OK";
      return label === expected ? `${method} ok` : `FAILED ${method}: ${label}`;
    },
  },
];
