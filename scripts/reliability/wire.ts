import { readFileSync } from "node:fs";
import { request as httpRequest } from "node:http";
import { connect as connectH2 } from "node:http2";
import { PingMessage } from "../../src/generated/leaksignal";

// Byte-level helpers shared by the fuzz and soak scripts: gRPC and HTTP/2 framing written by hand, so inputs
// can be wrong in exactly the way wanted, and the few probes that say whether the agent still serves.

export const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");

export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;

export const FLAG = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 } as const;

const H2_ERRORS = [
  "NO_ERROR",
  "PROTOCOL_ERROR",
  "INTERNAL_ERROR",
  "FLOW_CONTROL_ERROR",
  "SETTINGS_TIMEOUT",
  "STREAM_CLOSED",
  "FRAME_SIZE_ERROR",
  "REFUSED_STREAM",
  "CANCEL",
  "COMPRESSION_ERROR",
  "CONNECT_ERROR",
  "ENHANCE_YOUR_CALM",
  "INADEQUATE_SECURITY",
  "HTTP_1_1_REQUIRED",
];

export function h2ErrorName(code: number): string {
  return H2_ERRORS[code] ?? `error ${code}`;
}

const GRPC_CODES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
];

export function grpcStatusName(code: string | number): string {
  return GRPC_CODES[Number(code)] ?? `status ${code}`;
}

/** One gRPC length-prefixed message; `declaredLength` lets the prefix lie about the body. */
export function grpcFrame(payload: Uint8Array, options: { compressed?: number; declaredLength?: number } = {}): Buffer {
  const header = Buffer.alloc(5);
  header.writeUInt8(options.compressed ?? 0, 0);
  header.writeUInt32BE((options.declaredLength ?? payload.length) >>> 0, 1);
  return Buffer.concat([header, payload]);
}

/** One HTTP/2 frame; `declaredLength` lets the length field lie about the payload. */
export function h2Frame(
  type: number,
  flags: number,
  streamId: number,
  payload: Uint8Array = Buffer.alloc(0),
  declaredLength?: number,
): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE((declaredLength ?? payload.length) & 0xffffff, 0, 3);
  header.writeUInt8(type & 0xff, 3);
  header.writeUInt8(flags & 0xff, 4);
  header.writeUInt32BE(streamId >>> 0, 5);
  return Buffer.concat([header, payload]);
}

/** An HPACK header block of literal fields without indexing or Huffman coding: anything can be sent, even wrong. */
export function hpackBlock(headers: ReadonlyArray<readonly [string, string]>): Buffer {
  const parts: Buffer[] = [];
  for (const [name, value] of headers) {
    parts.push(Buffer.from([0]), hpackString(Buffer.from(name, "latin1")), hpackString(Buffer.from(value, "latin1")));
  }
  return Buffer.concat(parts);
}

function hpackString(bytes: Buffer): Buffer {
  // 7-bit prefix integer (RFC 7541 §5.1), Huffman bit clear.
  const length: number[] = [];
  if (bytes.length < 127) length.push(bytes.length);
  else {
    length.push(127);
    let rest = bytes.length - 127;
    while (rest >= 128) {
      length.push((rest % 128) + 128);
      rest = Math.floor(rest / 128);
    }
    length.push(rest);
  }
  return Buffer.concat([Buffer.from(length), bytes]);
}

export interface H2FrameHeader {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

/** The complete frames at the start of what a server sent (after the client preface, servers send frames only). */
export function readFrames(data: Buffer): H2FrameHeader[] {
  const frames: H2FrameHeader[] = [];
  let offset = 0;
  while (offset + 9 <= data.length) {
    const length = data.readUIntBE(offset, 3);
    if (offset + 9 + length > data.length) break;
    frames.push({
      type: data.readUInt8(offset + 3),
      flags: data.readUInt8(offset + 4),
      streamId: data.readUInt32BE(offset + 5) & 0x7fffffff,
      payload: data.subarray(offset + 9, offset + 9 + length),
    });
    offset += 9 + length;
  }
  return frames;
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number | undefined {
  try {
    const match = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, "utf8"));
    return match ? Number(match[1]) * 1024 : undefined;
  } catch {
    return undefined;
  }
}

/** An HTTP/1.1 GET on a fresh connection: the status and body, or the error. */
export function httpGet(port: number, path: string, timeoutMs = 5_000): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: "127.0.0.1", port, path, agent: false, timeout: timeoutMs }, (res) => {
      let body = "";
      res.setEncoding("utf8");
      res.on("data", (chunk: string) => {
        body += chunk;
      });
      res.on("end", () => resolve({ status: res.statusCode ?? 0, body }));
      res.on("error", reject);
    });
    req.on("timeout", () => req.destroy(new Error(`GET ${path} timed out`)));
    req.on("error", reject);
    req.end();
  });
}

/** A gRPC Ping on a fresh HTTP/2 connection; resolves true when the agent echoes the timestamp with status OK. */
export function grpcPing(port: number, timeoutMs = 5_000): Promise<boolean> {
  return new Promise((resolve) => {
    const timestamp = BigInt(Date.now());
    const session = connectH2(`http://127.0.0.1:${port}`);
    const done = (ok: boolean) => {
      clearTimeout(timer);
      session.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    session.on("error", () => done(false));
    const stream = session.request({
      ":method": "POST",
      ":path": "/leaksignal.Leaksignal/Ping",
      "content-type": "application/grpc",
      te: "trailers",
    });
    const chunks: Buffer[] = [];
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("trailers", (trailers) => {
      const body = Buffer.concat(chunks);
      const echoed = body.length >= 5 ? PingMessage.decode(body.subarray(5)).timestamp === timestamp : false;
      done(trailers["grpc-status"] === "0" && echoed);
    });
    stream.on("error", () => done(false));
    stream.on("close", () => done(false));
    stream.end(grpcFrame(PingMessage.encode({ timestamp }).finish()));
  });
}
