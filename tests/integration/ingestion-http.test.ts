import { request as http1Request, type IncomingHttpHeaders } from "node:http";
import { type ClientHttp2Session, constants } from "node:http2";
import { connect as tcpConnect } from "node:net";
import { Readable } from "node:stream";
import { afterEach, describe, expect, it } from "vitest";
import type { HttpRequest, HttpRoute } from "../../src/adapters/ingestion/http-route";
import { IngestionServer } from "../../src/adapters/ingestion/ingestion-server";
import { PingMessage } from "../../src/generated/leaksignal";
import { GrpcStatus } from "../support/grpc-client";
import {
  envoyHeaders,
  eventually,
  grpcFrame,
  h2Connect,
  type RunningIngestion,
  rawRequest,
  startIngestion,
} from "./ingestion-support";

let running: RunningIngestion | undefined;
let sessions: ClientHttp2Session[] = [];

afterEach(async () => {
  for (const session of sessions) session.destroy();
  sessions = [];
  await running?.server.stop();
  running = undefined;
});

async function setup(options: Parameters<typeof startIngestion>[0] = {}) {
  running = await startIngestion(options);
  return running;
}

async function h2(port: number): Promise<ClientHttp2Session> {
  const session = await h2Connect(port);
  sessions.push(session);
  return session;
}

interface Http1Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

function http1(port: number, method: string, path: string): Promise<Http1Answer> {
  return new Promise((resolve, reject) => {
    const req = http1Request({ host: "127.0.0.1", port, method, path, agent: false }, (res) => {
      const chunks: Buffer[] = [];
      res.on("data", (chunk: Buffer) => chunks.push(chunk));
      res.on("end", () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString() }),
      );
    });
    req.on("error", reject);
    req.end();
  });
}

/** A route serving `content` under /files/ as a stream, in small chunks. */
function fileRoute(content: Buffer, seen: HttpRequest[] = []): HttpRoute {
  return {
    prefix: "/files/",
    async handle(request) {
      seen.push(request);
      const chunks = [];
      for (let i = 0; i < content.length; i += 1000) chunks.push(content.subarray(i, i + 1000));
      return {
        status: 200,
        headers: { "content-type": "application/wasm", "content-length": content.length },
        body: Readable.from(chunks),
      };
    },
  };
}

describe("plain HTTP on the ingestion port", () => {
  it("answers an HTTP/1.1 GET / with the status line", async () => {
    const { port, registry } = await setup();
    const answer = await http1(port, "GET", "/");
    expect(answer.status).toBe(200);
    expect(answer.headers["content-type"]).toMatch(/^text\/plain/);
    expect(answer.body).toBe(`leakagent test: ${registry.current.size} deployments loaded\n`);
  });

  it("answers HEAD / with the length of the GET body and no body", async () => {
    const { port } = await setup();
    const get = await http1(port, "GET", "/");
    const head = await http1(port, "HEAD", "/");
    expect(head.status).toBe(200);
    expect(head.headers["content-length"]).toBe(String(Buffer.byteLength(get.body)));
    expect(head.body).toBe("");
  });

  it("answers 404 for unknown paths and 405 for other methods, over both protocols", async () => {
    const { port } = await setup();
    expect((await http1(port, "GET", "/nothing-here")).status).toBe(404);
    const post = await http1(port, "POST", "/");
    expect(post.status).toBe(405);
    expect(post.headers.allow).toBe("GET, HEAD");
    const session = await h2(port);
    expect((await rawRequest(session, { ":method": "GET", ":path": "/nothing-here" })).headers[":status"]).toBe(404);
    expect((await rawRequest(session, { ":method": "DELETE", ":path": "/" })).headers[":status"]).toBe(405);
  });

  it("serves a route's streamed body by prefix over HTTP/1.1 and HTTP/2, and HEAD without it", async () => {
    const content = Buffer.from(Array.from({ length: 10_500 }, (_, i) => i % 251));
    const seen: HttpRequest[] = [];
    const { port } = await setup({ routes: [fileRoute(content, seen)] });

    const overHttp1 = await new Promise<Buffer>((resolve, reject) => {
      http1Request({ host: "127.0.0.1", port, path: "/files/proxy.wasm?v=1", agent: false }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (chunk: Buffer) => chunks.push(chunk));
        res.on("end", () => resolve(Buffer.concat(chunks)));
      })
        .on("error", reject)
        .end();
    });
    expect(overHttp1.equals(content)).toBe(true);

    const session = await h2(port);
    const overHttp2 = await rawRequest(session, { ":method": "GET", ":path": "/files/proxy.wasm" });
    expect(overHttp2.headers[":status"]).toBe(200);
    expect(overHttp2.headers["content-type"]).toBe("application/wasm");
    expect(overHttp2.body.equals(content)).toBe(true);

    const head2 = await rawRequest(session, { ":method": "HEAD", ":path": "/files/proxy.wasm" });
    expect(head2.headers["content-length"]).toBe(String(content.length));
    expect(head2.body.length).toBe(0);
    const head1 = await http1(port, "HEAD", "/files/proxy.wasm");
    expect(head1.headers["content-length"]).toBe(String(content.length));
    expect(head1.body).toBe("");

    expect(seen.map((r) => [r.method, r.path])).toEqual([
      ["GET", "/files/proxy.wasm?v=1"],
      ["GET", "/files/proxy.wasm"],
      ["HEAD", "/files/proxy.wasm"],
      ["HEAD", "/files/proxy.wasm"],
    ]);
  });

  it("destroys a route's body and aborts its signal when the client goes away", async () => {
    let body: Readable | undefined;
    let signal: AbortSignal | undefined;
    const endless: HttpRoute = {
      prefix: "/endless/",
      async handle(request) {
        signal = request.signal;
        body = new Readable({ read() {} });
        body.push(Buffer.alloc(100));
        return { status: 200, body };
      },
    };
    const { port, server } = await setup({ routes: [endless] });
    const session = await h2(port);
    const stream = session.request({ ":method": "GET", ":path": "/endless/x" });
    stream.on("error", () => {});
    await new Promise((resolve) => stream.once("data", resolve));
    stream.close(constants.NGHTTP2_CANCEL);
    await eventually(() => body?.destroyed === true && signal?.aborted === true, "the body to be destroyed");
    await eventually(() => server.open.streams === 0, "the stream to close");

    body = undefined;
    const req = http1Request({ host: "127.0.0.1", port, path: "/endless/y", agent: false }, (res) => {
      res.once("data", () => req.destroy());
    });
    req.on("error", () => {});
    req.end();
    await eventually(() => body?.destroyed === true && signal?.aborted === true, "the HTTP/1.1 body to be destroyed");
  });

  it("recognises HTTP/2 when the connection preface arrives in pieces", async () => {
    const { port } = await setup();
    const socket = tcpConnect(port, "127.0.0.1");
    socket.on("error", () => {});
    await new Promise((resolve) => socket.once("connect", resolve));
    const preface = Buffer.from("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n");
    const emptySettings = Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]);
    socket.write(preface.subarray(0, 5));
    await new Promise((resolve) => setTimeout(resolve, 20));
    socket.write(Buffer.concat([preface.subarray(5), emptySettings]));
    const first = await new Promise<Buffer>((resolve) => socket.once("data", resolve));
    expect(first.readUInt8(3)).toBe(4); // the server's SETTINGS frame, not an HTTP/1.1 400
    socket.destroy();
  });

  it("answers garbage that is not HTTP with an HTTP/1.1 400, and keeps serving", async () => {
    const { port } = await setup();
    const socket = tcpConnect(port, "127.0.0.1");
    socket.on("error", () => {});
    socket.write("\x16\x03\x01 not http\r\n\r\n");
    const answer = await new Promise<string>((resolve) => socket.once("data", (d: Buffer) => resolve(d.toString())));
    expect(answer).toMatch(/^HTTP\/1\.1 400/);
    socket.destroy();
    expect((await http1(port, "GET", "/")).status).toBe(200);
  });
});

describe("stopping the ingestion server", () => {
  it("lets in-flight requests finish over both protocols, then refuses connections", async () => {
    let release: () => void = () => {};
    const released = new Promise<void>((resolve) => {
      release = resolve;
    });
    const slow: HttpRoute = {
      prefix: "/slow/",
      async handle() {
        await released;
        return { status: 200, body: "done" };
      },
    };
    const { port, server } = await setup({ routes: [slow] });
    const session = await h2(port);
    const overHttp2 = rawRequest(session, { ":method": "GET", ":path": "/slow/a" });
    const overHttp1 = http1(port, "GET", "/slow/b");
    await eventually(() => server.open.connections === 2 && server.open.streams === 1, "both requests to arrive");

    const stopped = server.stop();
    await new Promise((resolve) => setTimeout(resolve, 30));
    release();
    expect((await overHttp2).body.toString()).toBe("done");
    expect((await overHttp1).body).toBe("done");
    await stopped;
    expect(server.open).toEqual({ connections: 0, sessions: 0, streams: 0 });
    await expect(http1(port, "GET", "/")).rejects.toThrow(/ECONNREFUSED/);
  });

  it("closes what remains after the drain timeout", async () => {
    const { port, server } = await setup({ drainTimeoutMs: 100 });
    const session = await h2(port);
    session.on("error", () => {});
    // A policy stream the app did not end: only the drain timeout ends it.
    const policy = session.request(envoyHeaders("UpdatePolicy"));
    policy.on("error", () => {});
    await eventually(() => server.open.streams === 1, "the policy stream to open");
    const started = Date.now();
    await server.stop();
    expect(Date.now() - started).toBeGreaterThanOrEqual(90);
    expect(server.open).toEqual({ connections: 0, sessions: 0, streams: 0 });
  });

  it("is safe without start and safe twice", async () => {
    const { server, registry, telemetry, logger } = await setup();
    await Promise.all([server.stop(), server.stop()]);
    await server.stop();
    const never = new IngestionServer(
      { bind: { host: "127.0.0.1", port: 0 }, status: () => "" },
      registry,
      telemetry,
      logger,
    );
    await never.stop();
    await never.stop();
  });

  it("fails start with the address when the port is taken", async () => {
    const { port, registry, telemetry, logger } = await setup();
    const second = new IngestionServer(
      { bind: { host: "127.0.0.1", port }, status: () => "" },
      registry,
      telemetry,
      logger,
    );
    await expect(second.start()).rejects.toThrow(`cannot listen on 127.0.0.1:${port}`);
    await second.stop();
  });

  it("still answers gRPC on a connection opened before an HTTP/1.1 probe", async () => {
    const { port } = await setup();
    const session = await h2(port);
    expect((await http1(port, "GET", "/")).status).toBe(200);
    const answer = await rawRequest(session, envoyHeaders("Ping"), [
      grpcFrame(PingMessage.encode({ timestamp: 8n }).finish()),
    ]);
    expect(answer.status).toBe(GrpcStatus.OK);
  });
});
