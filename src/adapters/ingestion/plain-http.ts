import type { IncomingMessage, ServerResponse } from "node:http";
import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerHttp2Stream } from "node:http2";
import { pipeline, Readable } from "node:stream";
import type { Logger } from "../../ports/logger.port";
import type { HttpReply, HttpRequest, HttpRoute } from "./http-route";

// Plain HTTP on the ingestion port, the same over HTTP/1.1 and HTTP/2: the status line at `/`
// for probes and humans, readiness at `/ready`, and the registered routes (e.g. the proxy's Wasm under /proxy/).

/** The paths probes use; they answer without a client certificate when mutual TLS is on. */
export function isProbePath(path: string): boolean {
  const pathname = path.split("?", 1)[0];
  return pathname === "/" || pathname === "/ready";
}

export class PlainHttp {
  private readonly routes: readonly HttpRoute[];

  constructor(
    routes: readonly HttpRoute[],
    private readonly status: () => string,
    private readonly logger: Logger,
    /** False once the agent is draining: `/ready` then answers 503 so no new work is sent here. */
    private readonly ready: () => boolean = () => true,
  ) {
    // Longest prefix first, so a more specific route wins whatever the registration order.
    this.routes = [...routes].sort((a, b) => b.prefix.length - a.prefix.length);
  }

  async answer(request: HttpRequest): Promise<HttpReply> {
    if (request.method !== "GET" && request.method !== "HEAD") {
      return textReply(405, "method not allowed", { allow: "GET, HEAD" });
    }
    const pathname = request.path.split("?", 1)[0] ?? "";
    if (pathname === "/") return textReply(200, this.status());
    if (pathname === "/ready") return this.ready() ? textReply(200, "ready") : textReply(503, "shutting down");
    const route = this.routes.find((candidate) => pathname.startsWith(candidate.prefix));
    if (!route) return textReply(404, "not found");
    try {
      return await route.handle(request);
    } catch (error) {
      this.logger.warn("http route failed", { prefix: route.prefix, error: `${error}` });
      return textReply(500, "internal error");
    }
  }

  /** A non-gRPC stream on an HTTP/2 connection (Envoy downloading the Wasm through the gRPC cluster). */
  serveHttp2(stream: ServerHttp2Stream, headers: IncomingHttpHeaders): void {
    const aborter = new AbortController();
    stream.on("error", (error) => this.logger.debug("http/2 stream error", { error: `${error}` }));
    stream.on("close", () => {
      if (!stream.writableFinished) aborter.abort();
    });
    stream.resume(); // a request body is never read: drain it
    const method = headers[":method"] ?? "GET";
    const request: HttpRequest = { method, path: headers[":path"] ?? "/", headers, signal: aborter.signal };
    void this.answer(request)
      .then((reply) => this.writeHttp2(stream, reply, method === "HEAD"))
      .catch((error: unknown) => this.replyFailed(error, () => stream.destroy()));
  }

  /** An HTTP/1.1 request (the Kubernetes liveness probe, curl). */
  serveHttp1(incoming: IncomingMessage, response: ServerResponse): void {
    const aborter = new AbortController();
    response.on("close", () => {
      if (!response.writableFinished) aborter.abort();
    });
    response.on("error", (error) => this.logger.debug("http/1.1 response error", { error: `${error}` }));
    incoming.resume();
    const method = incoming.method ?? "GET";
    const request: HttpRequest = {
      method,
      path: incoming.url ?? "/",
      headers: incoming.headers,
      signal: aborter.signal,
    };
    void this.answer(request)
      .then((reply) => this.writeHttp1(response, reply, method === "HEAD"))
      .catch((error: unknown) => this.replyFailed(error, () => response.destroy()));
  }

  private writeHttp2(stream: ServerHttp2Stream, reply: HttpReply, head: boolean): void {
    const { body } = reply;
    if (stream.destroyed || stream.closed) {
      discard(body);
      return;
    }
    const headers = headersOf(reply);
    // Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2).
    for (const name of HOP_BY_HOP) delete headers[name];
    headers[":status"] = reply.status;
    try {
      if (head || body === undefined) {
        discard(body);
        stream.respond(headers, { endStream: true });
      } else if (body instanceof Readable) {
        stream.respond(headers);
        pipeline(body, stream, (error) => this.bodyEnded(error));
      } else {
        stream.respond(headers);
        stream.end(body);
      }
    } catch (error) {
      discard(body);
      throw error;
    }
  }

  private writeHttp1(response: ServerResponse, reply: HttpReply, head: boolean): void {
    const { body } = reply;
    if (response.destroyed) {
      discard(body);
      return;
    }
    const headers = headersOf(reply);
    try {
      response.writeHead(reply.status, headers);
    } catch (error) {
      discard(body);
      throw error;
    }
    if (head || body === undefined) {
      discard(body);
      response.end();
    } else if (body instanceof Readable) {
      pipeline(body, response, (error) => this.bodyEnded(error));
    } else {
      response.end(body);
    }
  }

  // A route's reply could not be written (e.g. an invalid header): drop the request, keep serving.
  private replyFailed(error: unknown, drop: () => void): void {
    this.logger.warn("http reply could not be written", { error: `${error}` });
    drop();
  }

  // pipeline has destroyed the body by now if the client went away or the body failed.
  private bodyEnded(error: Error | null | undefined): void {
    if (error) this.logger.debug("http response body not completed", { error: `${error}` });
  }
}

const HOP_BY_HOP = new Set(["connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade"]);

function textReply(status: number, text: string, headers: Record<string, string> = {}): HttpReply {
  return { status, headers: { "content-type": "text/plain; charset=utf-8", ...headers }, body: `${text}\n` };
}

/** Lower-cased headers; known-length bodies always carry content-length, HEAD included. */
function headersOf(reply: HttpReply): OutgoingHttpHeaders {
  const headers: OutgoingHttpHeaders = {};
  for (const [name, value] of Object.entries(reply.headers ?? {})) headers[name.toLowerCase()] = value;
  const { body } = reply;
  if (typeof body === "string" || Buffer.isBuffer(body)) headers["content-length"] = Buffer.byteLength(body);
  return headers;
}

function discard(body: HttpReply["body"]): void {
  if (body instanceof Readable) body.destroy();
}
