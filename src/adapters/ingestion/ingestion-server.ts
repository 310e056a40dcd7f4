import {
  createServer as createHttp1Server,
  type Server as Http1Server,
  type IncomingMessage,
  type ServerResponse,
} from "node:http";
import {
  createServer as createHttp2Server,
  type Http2Server,
  type Http2Session,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from "node:http2";
import { type AddressInfo, createServer as createNetServer, type Server, type Socket } from "node:net";
import { createServer as createTlsServer, type TLSSocket, type Server as TlsServer } from "node:tls";
import type { ProxyRegistry } from "../../domain/proxies/proxy-registry";
import type { Logger } from "../../ports/logger.port";
import type { RejectionReason, TelemetrySink } from "../../ports/telemetry-sink.port";
import {
  encodeGrpcMessage,
  type GrpcCall,
  type GrpcCallDependencies,
  type GrpcMethod,
  GrpcStatus,
  serveGrpc,
} from "./grpc-call";
import type { HttpRoute } from "./http-route";
import { type KeepaliveOptions, keepAlive } from "./keepalive";
import { leaksignalMethods, POLICY_STREAM_PATH } from "./leaksignal-service";
import { isProbePath, PlainHttp } from "./plain-http";
import { TlsCredentials, type TlsFiles } from "./tls-credentials";

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
  /**
   * HTTP/2 connections are closed gracefully after this long, ±10 % so they do not all go at once, to
   * spread proxies over new pods (gRPC's MAX_CONNECTION_AGE); 0 keeps them forever. See docs/kubernetes.md.
   */
  readonly maxConnectionAgeMs?: number;
  /** Per-connection limits and timeouts; each one left out takes its INGESTION_DEFAULTS value. */
  readonly limits?: Partial<IngestionLimits>;
  /** Server PINGs that find dead connections. */
  readonly keepalive?: KeepaliveOptions;
  /** TLS on the port instead of cleartext; with a client CA, mutual TLS. */
  readonly tls?: TlsFiles | undefined;
}

/** What one client may hold or take on the ingestion port (docs/operations.md). */
export interface IngestionLimits {
  /** HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS: streams open at once on one connection. */
  readonly maxConcurrentStreams: number;
  /** node:http2's maxSessionMemory, in MiB: one connection's HTTP/2 state; past it new streams are refused. */
  readonly maxSessionMemoryMb: number;
  /** Response bytes a policy stream may leave unread when the next policy is sent; past it the stream is dropped. */
  readonly maxPolicyBacklogBytes: number;
  /** A new connection must finish its TLS handshake, if any, and send its first bytes within this. */
  readonly handshakeTimeoutMs: number;
  /** An HTTP/1.1 request's line, headers and body must arrive within this; else 408. */
  readonly http1RequestTimeoutMs: number;
  /** An HTTP/1.1 connection with no traffic for this long is closed. */
  readonly http1IdleTimeoutMs: number;
}

export const INGESTION_DEFAULTS = {
  maxMessageBytes: 4 * 1024 * 1024,
  drainTimeoutMs: 5_000,
  maxConnectionAgeMs: 30 * 60_000,
  limits: {
    maxConcurrentStreams: 1_000,
    maxSessionMemoryMb: 10,
    maxPolicyBacklogBytes: 4 * 1024 * 1024,
    handshakeTimeoutMs: 10_000,
    http1RequestTimeoutMs: 10_000,
    http1IdleTimeoutMs: 60_000,
  } satisfies IngestionLimits,
  keepalive: { intervalMs: 30_000, timeoutMs: 10_000 } satisfies KeepaliveOptions,
} as const;

/** nghttp2's error numbers behind the session errors node:http2 reports for limits it enforces. */
const NGHTTP2_ERR_PROTO = -505;
const NGHTTP2_ERR_CALLBACK_FAILURE = -902;
const CLIENT_CERTIFICATE_REQUIRED = "a client certificate signed by the agent's client CA is required";
/** What an HTTP/2 client with prior knowledge sends first (RFC 9113 §3.4). */
const HTTP2_PREFACE = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", "latin1");
const GRPC_CONTENT_TYPE = /^application\/grpc($|[+;])/;
const MAX_AGE_MESSAGE = "connection reached its maximum age; reconnect";
/** The longest delay a Node timer can hold (~24.8 days). */
const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * The ingestion port: one TCP port for gRPC over h2c (Envoy's gRPC client), plain HTTP GETs on
 * those same HTTP/2 connections (Envoy fetching the proxy Wasm), and HTTP/1.1 (probes, curl).
 * Each connection is sorted by its first bytes, each HTTP/2 stream by its content-type. With TLS, the
 * same happens inside the TLS connection (ALPN offers h2 and http/1.1).
 */
export class IngestionServer {
  private readonly listener: Server;
  private readonly http1: Http1Server;
  private readonly http2: Http2Server;
  private readonly plain: PlainHttp;
  private readonly limits: IngestionLimits;
  private readonly keepalive: KeepaliveOptions;
  private readonly tls: TlsCredentials | undefined;
  /** With mutual TLS: connections whose client showed no valid certificate (they get the probe paths only). */
  private readonly unverified = new WeakSet<object>();
  /** Open streams by connection, to tell a client that went past SETTINGS_MAX_CONCURRENT_STREAMS. */
  private readonly sessionStreams = new Map<Http2Session, number>();
  private readonly methods: ReadonlyMap<string, GrpcMethod>;
  private readonly grpc: GrpcCallDependencies;
  private readonly drainTimeoutMs: number;
  private readonly maxConnectionAgeMs: number;
  /** Open policy streams by connection: they never end by themselves, so a connection's retirement ends them. */
  private readonly policyCalls = new Map<Http2Session, Set<GrpcCall>>();

  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<ServerHttp2Session>();
  /** HTTP/1.1 sockets and how many requests each has in flight. */
  private readonly http1Requests = new Map<Socket, number>();
  private streams = 0;
  private closing = false;
  private draining = false;
  private listenerClosed: Promise<void> = Promise.resolve();
  private stopped: Promise<void> | undefined;
  private allClosed: (() => void) | undefined;

  constructor(
    private readonly config: IngestionConfig,
    registry: ProxyRegistry,
    telemetry: TelemetrySink,
    private readonly logger: Logger,
  ) {
    this.drainTimeoutMs = config.drainTimeoutMs ?? INGESTION_DEFAULTS.drainTimeoutMs;
    this.maxConnectionAgeMs = config.maxConnectionAgeMs ?? INGESTION_DEFAULTS.maxConnectionAgeMs;
    const limits: IngestionLimits = { ...INGESTION_DEFAULTS.limits, ...config.limits };
    this.limits = limits;
    this.keepalive = config.keepalive ?? INGESTION_DEFAULTS.keepalive;
    this.grpc = {
      limits: {
        maxMessageBytes: config.maxMessageBytes ?? INGESTION_DEFAULTS.maxMessageBytes,
        maxBacklogBytes: limits.maxPolicyBacklogBytes,
      },
      telemetry,
      logger,
    };
    this.methods = leaksignalMethods(registry, telemetry, logger);
    this.plain = new PlainHttp(config.routes ?? [], config.status, logger, () => !this.draining);

    if (config.tls) {
      this.tls = new TlsCredentials(config.tls, logger);
      // The certificate is loaded in start(). A client without a valid certificate still completes the
      // handshake, so that probes work; it is refused everything but the probe paths.
      const server = createTlsServer({
        noDelay: true,
        ALPNProtocols: ["h2", "http/1.1"],
        requestCert: Boolean(config.tls.clientCaPath),
        rejectUnauthorized: false,
        handshakeTimeout: limits.handshakeTimeoutMs,
      });
      server.on("secureConnection", (socket: TLSSocket) => this.sniff(socket));
      server.on("tlsClientError", (error: NodeJS.ErrnoException) => {
        if (error.code === "ERR_TLS_HANDSHAKE_TIMEOUT") this.reject("request_timeout", "tls handshake too slow", {});
        else logger.debug("tls handshake failed", { error: `${error}` });
      });
      this.listener = server;
    } else {
      this.listener = createNetServer({ noDelay: true });
    }
    this.listener.on("connection", (socket: Socket) => this.accept(socket));

    this.http2 = createHttp2Server({
      settings: { maxConcurrentStreams: limits.maxConcurrentStreams },
      maxSessionMemory: limits.maxSessionMemoryMb,
    });
    this.http2.on("session", (session) => this.trackSession(session));
    this.http2.on("stream", (stream, headers) => {
      // Undefined when the connection is already gone by the time the stream is handed over.
      const session = stream.session;
      this.streams++;
      if (session) this.sessionStreams.set(session, (this.sessionStreams.get(session) ?? 0) + 1);
      // "close" comes once; `on` spares the wrapper `once` makes for every stream.
      stream.on("close", () => {
        this.streams--;
        // Streams closed because their session failed are left counted, for the session error to see.
        const open = session && this.sessionStreams.get(session);
        if (open && !session.destroyed) this.sessionStreams.set(session, open - 1);
      });
      if (session && this.unverified.has(session) && !isProbePath(headers[":path"] ?? "")) {
        this.refuseUnverified(stream, headers);
      } else if (GRPC_CONTENT_TYPE.test(headers["content-type"] ?? "")) {
        const call = serveGrpc(stream, headers, this.methods, this.grpc);
        const policyCalls = call.path === POLICY_STREAM_PATH && stream.session && this.policyCalls.get(stream.session);
        if (policyCalls) {
          policyCalls.add(call);
          stream.once("close", () => policyCalls.delete(call));
        }
      } else {
        this.plain.serveHttp2(stream, headers);
      }
    });
    this.http2.on("sessionError", (error) => logger.debug("http/2 session error", { error: `${error}` }));
    this.http2.on("error", (error) => logger.debug("http/2 server error", { error: `${error}` }));

    this.http1 = createHttp1Server({
      headersTimeout: limits.http1RequestTimeoutMs,
      requestTimeout: limits.http1RequestTimeoutMs,
      keepAliveTimeout: limits.http1IdleTimeoutMs,
      // How often node:http looks for requests past their timeout.
      connectionsCheckingInterval: Math.min(1_000, limits.http1RequestTimeoutMs),
    });
    // node:http only checks request timeouts on a server that listens; this one is handed its sockets.
    this.http1.emit("listening");
    this.http1.setTimeout(limits.http1IdleTimeoutMs);
    this.http1.on("clientError", (error: NodeJS.ErrnoException, socket: Socket) => this.refuseHttp1(error, socket));
    this.http1.on("request", (request: IncomingMessage, response: ServerResponse) =>
      this.serveHttp1(request, response),
    );
    this.http1.on("error", (error) => logger.debug("http/1.1 server error", { error: `${error}` }));
  }

  async start(): Promise<void> {
    if (this.closing) throw new Error("ingestion server was stopped");
    if (this.listener.listening) return;
    const { host, port } = this.config.bind;
    if (this.tls) {
      const server = this.listener as TlsServer;
      server.setSecureContext(this.tls.load());
      this.tls.start((options) => server.setSecureContext(options));
    }
    await new Promise<void>((resolve, reject) => {
      const fail = (error: Error) => {
        this.tls?.stop();
        reject(new Error(`cannot listen on ${host}:${port}: ${error.message}`));
      };
      this.listener.once("error", fail);
      this.listener.listen(port, host, () => {
        this.listener.off("error", fail);
        resolve();
      });
    });
    this.listener.on("error", (error) => this.logger.error("ingestion listener error", { error: `${error}` }));
    this.logger.info("ingestion listening", { host, port: this.port, tls: this.tls ? "on" : "off" });
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

  /** First step of a shutdown: `GET /ready` answers 503 from now on; everything else is served as before. */
  markNotReady(): void {
    this.draining = true;
  }

  /**
   * Second step: stops taking new work. The listener closes, every HTTP/2 connection gets GOAWAY (the client
   * opens its next streams elsewhere), idle HTTP/1.1 connections close; calls in flight go on.
   */
  stopAccepting(): void {
    this.draining = true;
    if (this.closing) return;
    this.closing = true;
    this.listenerClosed = new Promise<void>((resolve) => {
      if (this.listener.listening) this.listener.close(() => resolve());
      else resolve();
    });
    this.tls?.stop();
    for (const session of this.sessions) session.close();
    for (const [socket, inFlight] of this.http1Requests) if (inFlight === 0) socket.destroy();
  }

  /**
   * Graceful: stops accepting (see stopAccepting), lets in-flight calls finish for up to the drain timeout,
   * then closes what remains. Policy streams never finish by themselves: the app ends them
   * (registry.disconnectAll) after stopAccepting.
   */
  stop(): Promise<void> {
    this.stopped ??= this.shutdown();
    return this.stopped;
  }

  private async shutdown(): Promise<void> {
    this.stopAccepting();
    this.http1.close(); // stops node:http's request-timeout checks
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
    await this.listenerClosed;
  }

  /** A new TCP connection; with TLS, its handshake runs next and sniff() follows it. */
  private accept(socket: Socket): void {
    this.sockets.add(socket);
    socket.once("close", () => {
      this.sockets.delete(socket);
      if (this.sockets.size === 0) this.allClosed?.();
    });
    socket.on("error", (error) => this.logger.debug("ingestion connection error", { error: `${error}` }));
    if (this.closing) {
      socket.destroy();
      return;
    }
    if (!this.tls) this.sniff(socket);
  }

  /** Sorts a connection by its first bytes: the HTTP/2 preface, or else HTTP/1.1. */
  private sniff(socket: Socket): void {
    socket.once("close", () => this.http1Requests.delete(socket));
    if (this.tls?.files.clientCaPath && !(socket as TLSSocket).authorized) {
      this.unverified.add(socket);
      this.logger.debug("tls client without a valid certificate: probes only", {
        peer: socket.remoteAddress,
        reason: `${(socket as TLSSocket).authorizationError ?? "no certificate"}`,
      });
    }
    // A client that connects and says nothing is dropped (also covers a slow TLS client after its handshake).
    const silent = () => {
      this.reject("request_timeout", "connection sent nothing in time; closing it", { peer: socket.remoteAddress });
      socket.destroy();
    };
    socket.setTimeout(this.limits.handshakeTimeoutMs);
    socket.once("timeout", silent);

    let received: Buffer = Buffer.alloc(0);
    const sniff = (chunk: Buffer) => {
      received = received.length === 0 ? chunk : Buffer.concat([received, chunk]);
      const compared = Math.min(received.length, HTTP2_PREFACE.length);
      const http2 = received.subarray(0, compared).equals(HTTP2_PREFACE.subarray(0, compared));
      if (http2 && received.length < HTTP2_PREFACE.length) return; // a prefix so far: wait for the rest
      socket.off("data", sniff);
      socket.pause();
      socket.setTimeout(0);
      socket.off("timeout", silent);
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
    this.policyCalls.set(session, new Set());
    session.once("close", () => {
      this.sessions.delete(session);
      this.policyCalls.delete(session);
      this.sessionStreams.delete(session);
    });
    if (this.tls?.files.clientCaPath && !(session.socket as TLSSocket).authorized) this.unverified.add(session);
    keepAlive(session, this.keepalive, () => {
      this.reject("keepalive_timeout", "connection did not answer a ping in time; closing it", this.open);
      session.destroy();
    });
    if (this.maxConnectionAgeMs > 0) {
      const ageMs = Math.min(this.maxConnectionAgeMs * (0.9 + 0.2 * Math.random()), MAX_TIMER_MS);
      const retirement = setTimeout(() => this.retire(session), ageMs).unref();
      session.once("close", () => clearTimeout(retirement));
    }
    session.on("error", (error: NodeJS.ErrnoException) => {
      // node:http2 ends a connection that breaks its limits with a session error; only the errno tells which.
      if (error.code === "ERR_HTTP2_ERROR") {
        const open = this.sessionStreams.get(session) ?? 0;
        if (error.errno === NGHTTP2_ERR_PROTO && open >= this.limits.maxConcurrentStreams) {
          this.reject("too_many_streams", "connection closed: it opened more streams than allowed", { open });
          return;
        }
        if (error.errno === NGHTTP2_ERR_CALLBACK_FAILURE) {
          this.reject("session_memory", "connection closed: too many streams refused for its memory use", { open });
          return;
        }
      }
      this.logger.debug("http/2 session error", { error: `${error}` });
    });
    if (this.closing) session.close();
  }

  /**
   * A connection's maximum age: GOAWAY, so the proxy opens its next streams on a new connection (maybe to
   * another pod); calls in flight finish; policy streams end with UNAVAILABLE, so the proxy reconnects at once.
   * Whatever is still open after the drain timeout is cut.
   */
  private retire(session: ServerHttp2Session): void {
    if (session.closed || session.destroyed) return;
    const policyCalls = [...(this.policyCalls.get(session) ?? [])];
    this.logger.debug("connection reached its maximum age; closing it", { policy_streams: policyCalls.length });
    session.close();
    for (const call of policyCalls) call.finish(GrpcStatus.UNAVAILABLE, MAX_AGE_MESSAGE);
    const grace = setTimeout(() => session.destroy(), this.drainTimeoutMs).unref();
    session.once("close", () => clearTimeout(grace));
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
    if (this.unverified.has(socket) && !isProbePath(request.url ?? "/")) {
      this.reject("client_certificate", "request without a valid client certificate refused", { path: request.url });
      request.resume();
      response.writeHead(403, { "content-type": "text/plain; charset=utf-8" }).end(`${CLIENT_CERTIFICATE_REQUIRED}\n`);
      return;
    }
    this.plain.serveHttp1(request, response);
  }

  /** A stream on a connection whose client has no valid certificate: UNAUTHENTICATED for gRPC, 403 otherwise. */
  private refuseUnverified(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    this.reject("client_certificate", "stream without a valid client certificate refused", { path: headers[":path"] });
    stream.on("error", () => {});
    if (stream.destroyed || stream.closed) return;
    stream.resume();
    const grpc = GRPC_CONTENT_TYPE.test(headers["content-type"] ?? "");
    if (grpc) {
      stream.respond(
        {
          ":status": 200,
          "content-type": "application/grpc",
          "grpc-status": String(GrpcStatus.UNAUTHENTICATED),
          "grpc-message": encodeGrpcMessage(CLIENT_CERTIFICATE_REQUIRED),
        },
        { endStream: true },
      );
    } else {
      stream.respond({ ":status": 403, "content-type": "text/plain; charset=utf-8" });
      stream.end(`${CLIENT_CERTIFICATE_REQUIRED}\n`);
    }
  }

  /**
   * A malformed HTTP/1.1 request or one past its timeout: answered as node:http would by itself (400, 431 or
   * 408, then closed), and the timeouts (slowloris) counted.
   */
  private refuseHttp1(error: NodeJS.ErrnoException, socket: Socket): void {
    const timedOut = error.code === "ERR_HTTP_REQUEST_TIMEOUT";
    if (timedOut)
      this.reject("request_timeout", "http/1.1 request not received in time", { peer: socket.remoteAddress });
    const status = timedOut
      ? "408 Request Timeout"
      : error.code === "HPE_HEADER_OVERFLOW"
        ? "431 Request Header Fields Too Large"
        : "400 Bad Request";
    // Only when no response of this connection is under way, so the answer cannot corrupt one.
    if (socket.writable && !this.http1Requests.get(socket) && (timedOut || error.code?.startsWith("HPE_"))) {
      socket.end(`HTTP/1.1 ${status}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
      socket.destroySoon();
    } else {
      socket.destroy();
    }
  }

  private reject(reason: RejectionReason, message: string, details: Record<string, unknown>): void {
    this.grpc.telemetry.requestRejected(reason);
    this.logger.debug(message, { reason, ...details });
  }
}
