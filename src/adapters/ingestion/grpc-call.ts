import { constants, type IncomingHttpHeaders, type ServerHttp2Stream } from "node:http2";
import { gunzipSync } from "node:zlib";
import type { Logger } from "../../ports/logger.port";
import type { RejectionReason, TelemetrySink } from "../../ports/telemetry-sink.port";

// The gRPC server side of one HTTP/2 stream: framing, status trailers, deadlines, limits.
// Written against https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md because
// @grpc/grpc-js's server cannot share a connection with plain HTTP (see docs/adr/0001).

/** gRPC status codes (https://grpc.github.io/grpc/core/md_doc_statuscodes.html). */
export const GrpcStatus = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type GrpcStatus = (typeof GrpcStatus)[keyof typeof GrpcStatus];

/** A status the server answers a call with. Handlers throw it; anything else becomes INTERNAL. */
export class GrpcError extends Error {
  constructor(
    readonly code: GrpcStatus,
    message: string,
  ) {
    super(message);
  }
}

/** What the server needs to know of a method: its `:path` and how its messages are coded. */
export interface GrpcMethodDefinition<Request, Response> {
  readonly path: string;
  requestDeserialize(bytes: Buffer): Request;
  responseSerialize(message: Response): Buffer;
}

export interface CallContext {
  /** The proxy's address, without the `::ffff:` of IPv4-mapped addresses. */
  readonly peerIp: string;
  /** Aborted when the call ends early: client reset, deadline, connection lost. */
  readonly signal: AbortSignal;
  /** The HTTP/2 connection the call came on (one per proxy), e.g. to remember per-proxy facts. */
  readonly connection: object | undefined;
}

/** The agent's side of a bidirectional call. */
export interface StreamCall<Response> extends CallContext {
  send(message: Response): void;
  /** Ends the call with a status; later calls do nothing. */
  finish(code: GrpcStatus, message?: string): void;
  /** Ends the call with a status for something the client got wrong, counted as `reason`. */
  reject(reason: RejectionReason, code: GrpcStatus, message: string): void;
}

export interface StreamListener<Request> {
  message(request: Request): void;
  /** The client half-closed: it sends no more messages. The call stays open unless the method ends it. */
  halfClosed?(): void;
  /** The call is over, however it ended. Called once. */
  closed(): void;
}

/** A method the server dispatches to by `:path`. */
export interface GrpcMethod {
  readonly path: string;
  serve(call: GrpcCall): void;
}

export interface GrpcLimits {
  readonly maxMessageBytes: number;
  /** Response bytes a stream may hold unread by its client when the next message is sent; past it, it is dropped. */
  readonly maxBacklogBytes?: number;
}

export function unaryMethod<Request, Response>(
  definition: GrpcMethodDefinition<Request, Response>,
  handle: (request: Request, context: CallContext) => Response | Promise<Response>,
): GrpcMethod {
  return {
    path: definition.path,
    serve(call) {
      let request: Request | undefined;
      let received = 0;
      call.onMessage = (payload) => {
        received++;
        if (received > 1) return call.reject("malformed", GrpcStatus.INTERNAL, "unary call sent more than one message");
        request = call.decode(definition, payload);
      };
      call.onHalfClose = () => {
        if (received !== 1 || request === undefined) {
          return call.reject("malformed", GrpcStatus.INTERNAL, "unary call sent no request message");
        }
        // The stream outlives the call by a while; holding the request until then would move every
        // report into the old generation, where collecting it costs far more.
        const accepted = request;
        request = undefined;
        // Synchronous handlers (MatchData) answer in the same tick: no promise per call.
        let response: Response | Promise<Response>;
        try {
          response = handle(accepted, call);
        } catch (error) {
          return call.fail(error);
        }
        if (!(response instanceof Promise)) return call.reply(definition.responseSerialize(response));
        response.then(
          (resolved) => call.reply(definition.responseSerialize(resolved)),
          (error: unknown) => call.fail(error),
        );
      };
    },
  };
}

/** A bidirectional method; the call stays open after the client half-closes, until either side ends it. */
export function bidiMethod<Request, Response>(
  definition: GrpcMethodDefinition<Request, Response>,
  open: (call: StreamCall<Response>) => StreamListener<Request>,
): GrpcMethod {
  return {
    path: definition.path,
    serve(call) {
      const listener = open({
        peerIp: call.peerIp,
        signal: call.signal,
        connection: call.connection,
        send: (message) => call.send(definition.responseSerialize(message)),
        finish: (code, message) => call.finish(code, message),
        reject: (reason, code, message) => call.reject(reason, code, message),
      });
      call.onMessage = (payload) => {
        const request = call.decode(definition, payload);
        if (request !== undefined) listener.message(request);
      };
      call.onHalfClose = () => listener.halfClosed?.();
      call.onClose = () => listener.closed();
    },
  };
}

export interface GrpcCallDependencies {
  readonly limits: GrpcLimits;
  readonly telemetry: TelemetrySink;
  readonly logger: Logger;
}

/** Serves one gRPC stream with the method its `:path` names; returns the call (already finished if refused). */
export function serveGrpc(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  methods: ReadonlyMap<string, GrpcMethod>,
  dependencies: GrpcCallDependencies,
): GrpcCall {
  const call = new GrpcCall(stream, headers, dependencies);
  // Every gRPC call is a POST. Anything else would be served as one by accident (a GET's empty body
  // reads as a call that sends nothing), so it is refused as the method it names cannot be.
  const httpMethod = headers[":method"];
  if (httpMethod !== "POST") {
    call.reject("unimplemented", GrpcStatus.UNIMPLEMENTED, `gRPC calls are POST requests, not ${httpMethod}`);
    return call;
  }
  const method = methods.get(call.path);
  if (!method) {
    call.reject("unimplemented", GrpcStatus.UNIMPLEMENTED, `unknown method ${call.path}`);
    return call;
  }
  let timeoutMs: number | undefined;
  try {
    timeoutMs = parseGrpcTimeout(headers["grpc-timeout"]);
  } catch (error) {
    call.fail(error);
    return call;
  }
  method.serve(call);
  call.start(timeoutMs);
  return call;
}

const TIMEOUT_UNIT_MS: Readonly<Record<string, number>> = { H: 3_600_000, M: 60_000, S: 1_000, m: 1, u: 1e-3, n: 1e-6 };
/** The longest delay a Node timer can hold (~24.8 days); anything longer is no deadline in practice. */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The deadline a `grpc-timeout` header asks for, in milliseconds; undefined for none.
 * A zero value means no deadline: Envoy sends `0m` on every unary call when no timeout is configured.
 */
export function parseGrpcTimeout(value: string | string[] | undefined): number | undefined {
  if (value === undefined) return undefined;
  const match = typeof value === "string" ? /^(\d{1,8})([HMSmun])$/.exec(value) : null;
  if (!match) throw new GrpcError(GrpcStatus.INTERNAL, `malformed grpc-timeout ${JSON.stringify(value)}`);
  const ms = Number(match[1]) * (TIMEOUT_UNIT_MS[match[2] ?? ""] ?? 0);
  if (ms === 0 || ms > MAX_TIMER_MS) return undefined;
  return Math.max(1, Math.ceil(ms));
}

/** Percent-encodes a status message as `grpc-message` requires (bytes outside 0x20-0x7E, and `%`). */
export function encodeGrpcMessage(message: string): string {
  let encoded = "";
  for (const byte of Buffer.from(message, "utf8")) {
    encoded +=
      byte >= 0x20 && byte <= 0x7e && byte !== 0x25
        ? String.fromCharCode(byte)
        : `%${byte.toString(16).toUpperCase().padStart(2, "0")}`;
  }
  return encoded;
}

export interface ReceivedMessage {
  readonly compressed: boolean;
  readonly payload: Buffer;
}

/** Splits a request body into length-prefixed messages, however DATA frames cut or combine them. */
export class MessageReader {
  private buffered: Buffer[] = [];
  private bufferedBytes = 0;
  private next: { compressed: boolean; length: number } | undefined;

  constructor(private readonly maxMessageBytes: number) {}

  /** The messages this chunk completes. Throws GrpcError on a bad prefix, before buffering an oversize body. */
  push(chunk: Buffer): ReceivedMessage[] {
    this.buffered.push(chunk);
    this.bufferedBytes += chunk.length;
    const messages: ReceivedMessage[] = [];
    for (;;) {
      if (!this.next) {
        if (this.bufferedBytes < 5) break;
        const prefix = this.take(5);
        const flag = prefix.readUInt8(0);
        const length = prefix.readUInt32BE(1);
        if (flag > 1) throw new GrpcError(GrpcStatus.INTERNAL, `invalid message flag ${flag}`);
        if (length > this.maxMessageBytes) {
          throw new GrpcError(
            GrpcStatus.RESOURCE_EXHAUSTED,
            `message of ${length} bytes exceeds the limit of ${this.maxMessageBytes}`,
          );
        }
        this.next = { compressed: flag === 1, length };
      }
      if (this.bufferedBytes < this.next.length) break;
      messages.push({ compressed: this.next.compressed, payload: this.take(this.next.length) });
      this.next = undefined;
    }
    return messages;
  }

  get midMessage(): boolean {
    return this.next !== undefined || this.bufferedBytes > 0;
  }

  // Concatenates only once enough bytes are there, so a large message costs one copy, not one per frame.
  private take(length: number): Buffer {
    const all = this.buffered.length === 1 ? (this.buffered[0] as Buffer) : Buffer.concat(this.buffered);
    const rest = all.subarray(length);
    this.buffered = rest.length > 0 ? [rest] : [];
    this.bufferedBytes = rest.length;
    return all.subarray(0, length);
  }
}

const REJECTION_OF_STATUS: Partial<Record<GrpcStatus, RejectionReason>> = {
  [GrpcStatus.RESOURCE_EXHAUSTED]: "message_too_large",
  [GrpcStatus.UNIMPLEMENTED]: "unimplemented",
  // What the framing itself finds wrong: bad prefixes, truncated streams, a bad grpc-timeout.
  [GrpcStatus.INTERNAL]: "malformed",
};

const RESPONSE_HEADERS = { ":status": 200, "content-type": "application/grpc" } as const;
const WAIT_FOR_TRAILERS = { waitForTrailers: true } as const;
const OK_TRAILERS: Readonly<Record<string, string>> = { "grpc-status": String(GrpcStatus.OK) };
/** An empty response message (MatchData's), framed: shared, Node only reads it. */
const EMPTY_MESSAGE_FRAME = Buffer.alloc(5);
const IGNORE = () => {};

/** One gRPC call on one HTTP/2 stream. Methods set the hooks; the call does the protocol. */
export class GrpcCall implements CallContext {
  readonly path: string;
  onMessage: (payload: Buffer) => void = IGNORE;
  onHalfClose: () => void = IGNORE;
  onClose: () => void = IGNORE;

  // Made only when a method asks for them: most calls (MatchData) never do, and an AbortController
  // and its abort (a DOMException with a stack) cost more than the rest of such a call's bookkeeping.
  private aborter: AbortController | undefined;
  private aborted = false;
  private peer: string | undefined;
  /** Only for messages that do not arrive whole in one chunk. */
  private reader: MessageReader | undefined;
  private readonly encoding: string;
  private headersSent = false;
  private finished = false;
  private trailers: Readonly<Record<string, string>> = OK_TRAILERS;
  private deadline: NodeJS.Timeout | undefined;

  constructor(
    private readonly stream: ServerHttp2Stream,
    headers: IncomingHttpHeaders,
    private readonly dependencies: GrpcCallDependencies,
  ) {
    this.path = headers[":path"] ?? "";
    this.encoding = String(headers["grpc-encoding"] ?? "identity");
    stream.on("error", (error) =>
      dependencies.logger.debug("grpc stream error", { method: this.path, error: `${error}` }),
    );
    stream.on("wantTrailers", () => {
      try {
        stream.sendTrailers(this.trailers);
        if (!stream.readableEnded) setImmediate(() => this.stopReading());
      } catch (error) {
        dependencies.logger.debug("grpc trailers not sent", { method: this.path, error: messageOf(error) });
      }
    });
    stream.on("close", () => {
      clearTimeout(this.deadline);
      this.finished = true;
      this.abort();
      this.onClose();
    });
  }

  get signal(): AbortSignal {
    if (!this.aborter) {
      this.aborter = new AbortController();
      if (this.aborted) this.aborter.abort();
    }
    return this.aborter.signal;
  }

  get connection(): object | undefined {
    return this.stream.session;
  }

  get peerIp(): string {
    if (this.peer === undefined) {
      const address = this.stream.session?.socket?.remoteAddress ?? "";
      this.peer = address.startsWith("::ffff:") ? address.slice(7) : address;
    }
    return this.peer;
  }

  start(timeoutMs: number | undefined): void {
    if (timeoutMs !== undefined) {
      this.deadline = setTimeout(() => {
        this.abort();
        this.reject("deadline_exceeded", GrpcStatus.DEADLINE_EXCEEDED, "deadline exceeded");
      }, timeoutMs);
    }
    this.stream.on("data", (chunk: Buffer) => this.receive(chunk));
    this.stream.on("end", () => {
      if (this.finished) return;
      if (this.reader?.midMessage) this.reject("malformed", GrpcStatus.INTERNAL, "stream ended mid-message");
      else this.guard(() => this.onHalfClose());
    });
  }

  /** Decodes a request message, or rejects the call with INVALID_ARGUMENT. */
  decode<Request>(definition: GrpcMethodDefinition<Request, unknown>, payload: Buffer): Request | undefined {
    try {
      return definition.requestDeserialize(payload);
    } catch (error) {
      this.reject("malformed", GrpcStatus.INVALID_ARGUMENT, `request message does not decode: ${messageOf(error)}`);
      return undefined;
    }
  }

  /** Sends one response message, uncompressed, after the response headers. */
  send(payload: Buffer): void {
    if (this.finished || this.stream.destroyed) return;
    const { maxBacklogBytes } = this.dependencies.limits;
    if (maxBacklogBytes !== undefined && this.stream.writableLength > maxBacklogBytes) {
      this.dropSlowReader();
      return;
    }
    this.respond();
    this.stream.write(frame(payload));
  }

  /** A unary call's answer: the response message and status OK, in one write. */
  reply(payload: Buffer): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.deadline);
    if (this.stream.destroyed || this.stream.closed) return;
    this.trailers = OK_TRAILERS;
    try {
      this.respond();
      this.stream.end(frame(payload));
    } catch (error) {
      this.dependencies.logger.debug("grpc response failed", { method: this.path, error: messageOf(error) });
    }
  }

  /** Ends the call with a status: trailers after a response, or trailers-only if nothing was sent. */
  finish(code: GrpcStatus, message = "", extra?: Record<string, string>): void {
    if (this.finished) return;
    this.finished = true;
    clearTimeout(this.deadline);
    if (this.stream.destroyed || this.stream.closed) return;
    this.trailers =
      code === GrpcStatus.OK && !message && !extra
        ? OK_TRAILERS
        : {
            "grpc-status": String(code),
            ...extra,
            ...(message ? { "grpc-message": encodeGrpcMessage(message) } : {}),
          };
    try {
      if (this.headersSent) {
        this.stream.end();
      } else {
        this.stream.respond(
          { ":status": 200, "content-type": "application/grpc", ...this.trailers },
          { endStream: true },
        );
        setImmediate(() => this.stopReading());
      }
    } catch (error) {
      this.dependencies.logger.debug("grpc response failed", { method: this.path, error: messageOf(error) });
    }
  }

  /** Refuses a call the client got wrong: counted, logged at debug, answered with a status. */
  reject(reason: RejectionReason, code: GrpcStatus, message: string, extra?: Record<string, string>): void {
    if (this.finished) return;
    this.dependencies.telemetry.requestRejected(reason);
    this.dependencies.logger.debug("grpc call rejected", { method: this.path, peer: this.peerIp, reason, message });
    this.finish(code, message, extra);
  }

  /** Ends the call for an error a handler threw. */
  fail(error: unknown): void {
    if (error instanceof GrpcError) {
      const reason = REJECTION_OF_STATUS[error.code];
      if (reason) this.reject(reason, error.code, error.message);
      else this.finish(error.code, error.message);
      return;
    }
    this.dependencies.logger.error("grpc handler failed", { method: this.path, error: messageOf(error) });
    this.finish(GrpcStatus.INTERNAL, "internal error");
  }

  // A client that stops reading would have the agent buffer every later message for it. Resetting the stream
  // frees what it holds; ENHANCE_YOUR_CALM is what gRPC clients report as RESOURCE_EXHAUSTED.
  private dropSlowReader(): void {
    this.finished = true;
    clearTimeout(this.deadline);
    this.dependencies.telemetry.requestRejected("slow_reader");
    this.dependencies.logger.debug("grpc stream dropped: its client does not read what it is sent", {
      method: this.path,
      peer: this.peerIp,
      unread_bytes: this.stream.writableLength,
    });
    this.stream.close(constants.NGHTTP2_ENHANCE_YOUR_CALM);
  }

  private respond(): void {
    if (this.headersSent) return;
    this.stream.respond(RESPONSE_HEADERS, WAIT_FOR_TRAILERS);
    this.headersSent = true;
  }

  private abort(): void {
    this.aborted = true;
    this.aborter?.abort();
  }

  private receive(chunk: Buffer): void {
    if (this.finished) return;
    // The usual case, one whole uncompressed message in one chunk, skips the reader's bookkeeping.
    if (
      !this.reader?.midMessage &&
      chunk.length >= 5 &&
      chunk[0] === 0 &&
      chunk.readUInt32BE(1) === chunk.length - 5 &&
      chunk.length - 5 <= this.dependencies.limits.maxMessageBytes
    ) {
      try {
        this.onMessage(chunk.subarray(5));
      } catch (error) {
        this.fail(error);
      }
      return;
    }
    let messages: ReceivedMessage[];
    try {
      this.reader ??= new MessageReader(this.dependencies.limits.maxMessageBytes);
      messages = this.reader.push(chunk);
    } catch (error) {
      this.fail(error);
      return;
    }
    for (const message of messages) {
      if (this.finished) return;
      const payload = this.uncompressed(message);
      if (payload) this.guard(() => this.onMessage(payload));
    }
  }

  private uncompressed(message: ReceivedMessage): Buffer | undefined {
    if (!message.compressed) return message.payload;
    if (this.encoding !== "gzip") {
      this.reject(
        "unimplemented",
        GrpcStatus.UNIMPLEMENTED,
        `message compression "${this.encoding}" is not supported`,
        {
          "grpc-accept-encoding": "identity,gzip",
        },
      );
      return undefined;
    }
    try {
      // Synchronous, bounded by the size limit: proxies rarely compress, so a worker pool is not worth it.
      return gunzipSync(message.payload, { maxOutputLength: this.dependencies.limits.maxMessageBytes });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code === "ERR_BUFFER_TOO_LARGE") {
        this.reject("message_too_large", GrpcStatus.RESOURCE_EXHAUSTED, "decompressed message exceeds the size limit");
      } else {
        this.reject("malformed", GrpcStatus.INTERNAL, `message does not gunzip: ${messageOf(error)}`);
      }
      return undefined;
    }
  }

  private guard(hook: () => void): void {
    try {
      hook();
    } catch (error) {
      this.fail(error);
    }
  }

  // The response is complete: stop a client still sending (RST_STREAM NO_ERROR). Called from a
  // setImmediate because Node submits trailers from one; sooner, the RST_STREAM would overtake them.
  private stopReading(): void {
    if (!this.stream.readableEnded && !this.stream.closed) this.stream.close(constants.NGHTTP2_NO_ERROR);
  }
}

/** A message with its 5-byte gRPC prefix (uncompressed). */
function frame(payload: Buffer): Buffer {
  if (payload.length === 0) return EMPTY_MESSAGE_FRAME;
  const framed = Buffer.allocUnsafe(5 + payload.length);
  framed.writeUInt8(0, 0);
  framed.writeUInt32BE(payload.length, 1);
  payload.copy(framed, 5);
  return framed;
}

function messageOf(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}
