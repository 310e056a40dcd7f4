import { createServer as createHttp1Server, type IncomingMessage, type ServerResponse } from "node:http";
import { createServer as createHttp2Server, type ServerHttp2Session } from "node:http2";
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from "node:net";
import type { ProxyRegistry } from "../../domain/proxies/proxy-registry";
import type { Logger } from "../../ports/logger.port";
import type { TelemetrySink } from "../../ports/telemetry-sink.port";
import { type GrpcCallDependencies, type GrpcMethod, serveGrpc } from "./grpc-call";
import type { HttpRoute } from "./http-route";
import { leaksignalMethods } from "./leaksignal-service";
import { PlainHttp } from "./plain-http";

export interface IngestionConfig {
  /** Where proxies connect; port 0 picks a free port (see `IngestionServer.port`). */
  readonly bind: { readonly host: string; readonly port: number };
  /** Largest gRPC request message accepted, compressed or not; larger ones get RESOURCE_EXHAUSTED. */
  readonly maxMessageBytes?: number;
  /** How long stop() lets in-flight calls and requests finish before closing what remains. */
  readonly drainTimeoutMs?: number;
  /** Plain HTTP routes by path prefix, e.g. the proxy Wasm under /proxy/. */
  readonly routes?: readonly HttpRoute[];
  /** The one-line answer to `GET /` (probes and humans). */
  readonly status: () => string;
}

export const INGESTION_DEFAULTS = {
  maxMessageBytes: 4 * 1024 * 1024,
  drainTimeoutMs: 5_000,
} as const;

/** A client that connects and says nothing is dropped after this long. */
const PREFACE_TIMEOUT_MS = 10_000;
/** HTTP/1.1 connections idle this long are closed (probes and curl, never proxies). */
const HTTP1_IDLE_TIMEOUT_MS = 60_000;
/** What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const GRPC_CONTENT_TYPE = /^application\/grpc($|[+;])/;

/**
 * The ingestion port: one TCP port for gRPC over h2c (Envoy's gRPC client), plain HTTP GETs on
 * those same HTTP/2 connections (Envoy fetching the proxy Wasm), and HTTP/1.1 (probes, curl).
 * Each connection is sorted by its first bytes, each HTTP/2 stream by its content-type.
 */
export class IngestionServer {
  private readonly listener: Server;
  private readonly http1 = createHttp1Server();
  private readonly http2 = createHttp2Server();
  private readonly plain: PlainHttp;
  private readonly methods: ReadonlyMap<string, GrpcMethod>;
  private readonly grpc: GrpcCallDependencies;
  private readonly drainTimeoutMs: number;

  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  /** HTTP/1.1 sockets and how many requests each has in flight. */
  private readonly http1Requests = new Map<Socket, number>();
  private streams = 0;
  private closing = false;
  private stopped: Promise<void> | undefined;
  private allClosed: (() => void) | undefined;

  constructor(
    private readonly config: IngestionConfig,
    registry: ProxyRegistry,
    telemetry: TelemetrySink,
    private readonly logger: Logger,
  ) {
    this.drainTimeoutMs = config.drainTimeoutMs ?? INGESTION_DEFAULTS.drainTimeoutMs;
    this.grpc = {
      limits: { maxMessageBytes: config.maxMessageBytes ?? INGESTION_DEFAULTS.maxMessageBytes },
      telemetry,
      logger,
    };
    this.methods = leaksignalMethods(registry, telemetry, logger);
    this.plain = new PlainHttp(config.routes ?? [], config.status, logger);
    this.listener = createNetServer({ noDelay: true }, (socket) => this.accept(socket));

    this.http2.on("session", (session) => this.trackSession(session));
    this.http2.on("stream", (stream, headers) => {
      this.streams++;
      stream.once("close", () => this.streams--);
      if (GRPC_CONTENT_TYPE.test(headers["content-type"] ?? "")) serveGrpc(stream, headers, this.methods, this.grpc);
      else this.plain.serveHttp2(stream, headers);
    });
    this.http2.on("sessionError", (error) => logger.debug("http/2 session error", { error: `${error}` }));
    this.http2.on("error", (error) => logger.debug("http/2 server error", { error: `${error}` }));

    this.http1.setTimeout(HTTP1_IDLE_TIMEOUT_MS);
    this.http1.on("request", (request: IncomingMessage, response: ServerResponse) =>
      this.serveHttp1(request, response),
    );
    this.http1.on("error", (error) => logger.debug("http/1.1 server error", { error: `${error}` }));
  }

  async start(): Promise<void> {
    if (this.closing) throw new Error("ingestion server was stopped");
    if (this.listener.listening) return;
    const { host, port } = this.config.bind;
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`));
      this.listener.once("error", fail);
      this.listener.listen(port, host, () => {
        this.listener.off("error", fail);
        resolve();
      });
    });
    this.listener.on("error", (error) => this.logger.error("ingestion listener error", { error: `${error}` }));
    this.logger.info("ingestion listening", { host, port: this.port });
  }

  /** The bound port (the real one when configured with port 0). */
  get port(): number {
    const address = this.listener.address() as AddressInfo | null;
    if (!address) throw new Error("ingestion server is not listening");
    return address.port;
  }

  /** What is open right now: TCP connections, HTTP/2 sessions, HTTP/2 streams. */
  get open(): { connections: number; sessions: number; streams: number } {
    return { connections: this.sockets.size, sessions: this.sessions.size, streams: this.streams };
  }

  /**
   * Graceful: stops accepting, sends GOAWAY, lets in-flight calls finish for up to the drain timeout,
   * then closes what remains. Policy streams are ended first by the app (registry.disconnectAll).
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.closing = true;
    const listenerClosed = new Promise<void>((resolve) => {
      if (this.listener.listening) this.listener.close(() => resolve());
      else resolve();
    });
    for (const session of this.sessions) session.close();
    for (const [socket, inFlight] of this.http1Requests) if (inFlight === 0) socket.destroy();
    const drained = new Promise<void>((resolve) => {
      this.allClosed = resolve;
      if (this.sockets.size === 0) resolve();
    });
    let timer: NodeJS.Timeout | undefined;
    const timedOut = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.drainTimeoutMs);
    });
    await Promise.race([drained, timedOut]);
    clearTimeout(timer);
    if (this.sockets.size > 0) {
      this.logger.info("closing connections still open after the drain timeout", this.open);
      for (const session of this.sessions) session.destroy();
      for (const socket of this.sockets) socket.destroy();
      await drained;
    }
    await listenerClosed;
  }

  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      this.http1Requests.delete(socket);
      if (this.sockets.size === 0) this.allClosed?.();
    });
    socket.on("error", (error) => this.logger.debug("ingestion connection error", { error: `${error}` }));
    if (this.closing) {
      socket.destroy();
      return;
    }
    socket.setTimeout(PREFACE_TIMEOUT_MS, () => socket.destroy());

    let received: Buffer = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const compared = Math.min(received.length, HTTP2_PREFACE.length);
      const http2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
      if (http2 && received.length < HTTP2_PREFACE.length) return; // a prefix so far: wait for the rest
      socket.off("data", sniff);
      socket.pause();
      socket.setTimeout(0);
      socket.unshift(received);
      if (http2) {
        this.http2.emit("connection", socket);
      } else {
        this.http1Requests.set(socket, 0);
        this.http1.emit("connection", socket);
        socket.resume(); // node:http reads through 'data' events, which a paused socket does not emit
      }
    };
    socket.on("data", sniff);
  }

  private trackSession(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.once("close", () => this.sessions.delete(session));
    session.on("error", (error) => this.logger.debug("http/2 session error", { error: `${error}` }));
    if (this.closing) session.close();
  }

  private serveHttp1(request: IncomingMessage, response: ServerResponse): void {
    const socket = request.socket;
    this.http1Requests.set(socket, (this.http1Requests.get(socket) ?? 0) + 1);
    if (this.closing) response.setHeader("connection", "close");
    response.once("close", () => {
      const inFlight = (this.http1Requests.get(socket) ?? 1) - 1;
      this.http1Requests.set(socket, inFlight);
      if (this.closing && inFlight === 0) socket.destroy();
    });
    this.plain.serveHttp1(request, response);
  }
}
