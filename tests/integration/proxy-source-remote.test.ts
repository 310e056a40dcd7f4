import { randomBytes } from "node:crypto";
import { mkdtemp, rm, writeFile } from "node:fs/promises";
import http from "node:http";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import path from "node:path";
import type { Readable } from "node:stream";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import type { HttpReply } from "../../src/adapters/ingestion/http-route";
import { ProxyRoute } from "../../src/adapters/proxy-source/proxy-route";
import { originUrl } from "../../src/adapters/proxy-source/remote-passthrough";
import { RecordingTelemetry } from "../support/recording-telemetry";
import { bodyOf, get, isStream, RecordingLogger, sha256 } from "./proxy-source-support";

/** A stand-in for LeakSignal's public module location, counting the requests it receives per path. */
class Origin {
  readonly hits = new Map<string, number>();
  readonly files = new Map<string, Buffer>();
  /** Paths whose body stops halfway until release() is called. */
  readonly held = new Set<string>();
  private releases: Array<() => void> = [];
  /** Paths answered 500, or never answered at all. */
  readonly failing = new Set<string>();
  readonly silent = new Set<string>();
  private server: http.Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = http.createServer((request, response) => this.answer(request, response));
    server.on("clientError", (_error, socket) => socket.destroy());
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", () => resolve());
    });
    this.server = server;
    this.port = (server.address() as AddressInfo).port;
  }

  async stop(): Promise<void> {
    const server = this.server;
    this.server = undefined;
    if (!server) return;
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }

  url(prefix = "/s3/leakproxy"): string {
    return `http://127.0.0.1:${this.port}${prefix}`;
  }

  count(path: string): number {
    return this.hits.get(path) ?? 0;
  }

  release(): void {
    for (const release of this.releases) release();
    this.releases = [];
  }

  private answer(request: http.IncomingMessage, response: http.ServerResponse): void {
    const path = request.url ?? "";
    this.hits.set(path, this.count(path) + 1);
    if (this.silent.has(path)) return;
    if (this.failing.has(path)) {
      response.writeHead(500, { "content-type": "text/plain" }).end("origin is broken");
      return;
    }
    const file = this.files.get(path);
    if (!file) {
      response.writeHead(404, { "content-type": "text/plain", "x-origin": "yes" }).end("no such version");
      return;
    }
    response.writeHead(200, {
      "content-type": "application/wasm",
      "content-length": file.length,
      etag: `"${sha256(file).slice(0, 16)}"`,
      "last-modified": "Wed, 29 Jan 2025 19:26:57 GMT",
      "set-cookie": "session=origin-only",
    });
    if (!this.held.has(path)) {
      response.end(file);
      return;
    }
    const half = Math.floor(file.length / 2);
    response.write(file.subarray(0, half));
    this.releases.push(() => response.end(file.subarray(half)));
  }
}

/** Reads from a stream until at least `bytes` arrived, leaving it paused for the rest. */
async function readAtLeast(stream: Readable, bytes: number): Promise<Buffer[]> {
  const chunks: Buffer[] = [];
  let total = 0;
  await new Promise<void>((resolve, reject) => {
    const onData = (chunk: Buffer) => {
      chunks.push(chunk);
      total += chunk.length;
      if (total >= bytes) {
        stream.off("data", onData);
        stream.pause();
        resolve();
      }
    };
    stream.on("data", onData);
    stream.once("error", reject);
  });
  return chunks;
}

describe("remote passthrough proxy source", () => {
  const versionPath = "2025_01_29_19_26_57_6243534_0.12.4/leaksignal.wasm";
  const originPath = `/s3/leakproxy/${versionPath}`;
  let origin: Origin;
  let wasm: Buffer;
  let telemetry: RecordingTelemetry;
  let logger: RecordingLogger;
  let route: ProxyRoute;

  beforeEach(async () => {
    origin = new Origin();
    await origin.start();
    wasm = randomBytes(6 * 1024 * 1024 + 3);
    origin.files.set(originPath, wasm);
    telemetry = new RecordingTelemetry();
    logger = new RecordingLogger();
    route = new ProxyRoute(telemetry, logger, { headersTimeoutMs: 300 });
    route.setSource({ type: "remote_passthrough", origin: origin.url() });
  });

  afterEach(async () => {
    await route.stop();
    await route.stop();
    await origin.stop();
  });

  it("joins the origin's path prefix and the module path with single slashes", () => {
    const segments = ["v1", "leaksignal.wasm"];
    for (const base of [
      "https://ingestion.app.leaksignal.com/s3/leakproxy",
      "https://ingestion.app.leaksignal.com/s3/leakproxy/",
    ]) {
      expect(originUrl(base, segments)?.href).toBe(
        "https://ingestion.app.leaksignal.com/s3/leakproxy/v1/leaksignal.wasm",
      );
    }
    expect(originUrl("http://origin:8080", segments)?.href).toBe("http://origin:8080/v1/leaksignal.wasm");
    expect(originUrl("ftp://origin/x", segments)).toBeUndefined();
  });

  it("streams a multi-megabyte module with the origin's status and content headers", async () => {
    const reply = await route.handle(get(`/proxy/${versionPath}?ignored=1`));
    expect(reply.status).toBe(200);
    expect(isStream(reply)).toBe(true);
    expect(reply.headers).toEqual({
      "content-type": "application/wasm",
      "content-length": String(wasm.length),
      etag: `"${sha256(wasm).slice(0, 16)}"`,
      "last-modified": "Wed, 29 Jan 2025 19:26:57 GMT",
    });
    expect(sha256(await bodyOf(reply))).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(1);
    expect(telemetry.pulled).toEqual([versionPath]);
  });

  it("sends one origin request for 50 concurrent pulls, streaming to the first before the end arrives", async () => {
    origin.held.add(originPath);
    const first = await Promise.all(Array.from({ length: 25 }, () => route.handle(get(`/proxy/${versionPath}`))));
    const firstBody = first[0]?.body as Readable;
    // Half the module reaches the first proxy while the origin still holds back the rest.
    const early = await readAtLeast(firstBody, Math.floor(wasm.length / 2));
    const late = await Promise.all(Array.from({ length: 25 }, () => route.handle(get(`/proxy/${versionPath}`))));
    origin.release();
    const bodies = await Promise.all([...first.slice(1), ...late].map(bodyOf));
    const rest = await bodyOf({ status: 200, body: firstBody });
    bodies.push(Buffer.concat([...early, rest]));
    expect(bodies).toHaveLength(50);
    for (const body of bodies) expect(sha256(body)).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(1);

    const again = await route.handle(get(`/proxy/${versionPath}`));
    expect(sha256(await bodyOf(again))).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(1);
    expect(new Set(telemetry.pulled)).toEqual(new Set([versionPath]));
    expect(telemetry.pulled).toHaveLength(51);
  });

  it("keeps downloading for the others when one proxy goes away mid-body", async () => {
    origin.held.add(originPath);
    const [leaving, staying] = await Promise.all([
      route.handle(get(`/proxy/${versionPath}`)),
      route.handle(get(`/proxy/${versionPath}`)),
    ]);
    const leavingBody = leaving?.body as Readable;
    await readAtLeast(leavingBody, 1);
    leavingBody.destroy();
    origin.release();
    expect(sha256(await bodyOf(staying as HttpReply))).toBe(sha256(wasm));
    const cached = await route.handle(get(`/proxy/${versionPath}`));
    expect(sha256(await bodyOf(cached))).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(1);
  });

  it("answers 304 and HEAD from the origin's headers", async () => {
    const etag = `"${sha256(wasm).slice(0, 16)}"`;
    const head = await route.handle(get(`/proxy/${versionPath}`, {}, "HEAD"));
    expect(head.status).toBe(200);
    expect(head.body).toBeUndefined();
    expect(head.headers?.["content-length"]).toBe(String(wasm.length));
    const notModified = await route.handle(get(`/proxy/${versionPath}`, { "if-none-match": etag }));
    expect(notModified.status).toBe(304);
    expect(notModified.body).toBeUndefined();
    expect(origin.count(originPath)).toBe(1);
  });

  it("passes an origin 404 through and does not cache it", async () => {
    const missing = "/proxy/0.0.0/leaksignal.wasm";
    for (let i = 1; i <= 2; i++) {
      const reply = await route.handle(get(missing));
      expect(reply.status).toBe(404);
      expect((await bodyOf(reply)).toString()).toBe("no such version");
      expect(reply.headers?.["x-origin"]).toBeUndefined();
      expect(origin.count("/s3/leakproxy/0.0.0/leaksignal.wasm")).toBe(i);
    }
    expect(telemetry.pulled).toEqual(["not_found", "not_found"]);
  });

  it("answers 502 for an origin 5xx, logs it, and recovers when the origin does", async () => {
    origin.failing.add(originPath);
    const failed = await route.handle(get(`/proxy/${versionPath}`));
    expect(failed.status).toBe(502);
    expect((await bodyOf(failed)).toString()).toContain("the origin answered 500");
    expect(logger.at("warn")).toEqual(["proxy origin download failed"]);

    origin.failing.delete(originPath);
    const recovered = await route.handle(get(`/proxy/${versionPath}`));
    expect(recovered.status).toBe(200);
    expect(sha256(await bodyOf(recovered))).toBe(sha256(wasm));
    expect(telemetry.pulled).toEqual(["unavailable", versionPath]);
  });

  it("answers 502 while the origin is down and serves again once it is back", async () => {
    const port = origin.port;
    await origin.stop();
    const down = await route.handle(get(`/proxy/${versionPath}`));
    expect(down.status).toBe(502);
    expect((await bodyOf(down)).toString()).toMatch(/cannot reach the origin \(ECONNREFUSED\)/);
    expect(logger.at("warn")).toHaveLength(1);

    await origin.start(port);
    const back = await route.handle(get(`/proxy/${versionPath}`));
    expect(back.status).toBe(200);
    expect(sha256(await bodyOf(back))).toBe(sha256(wasm));
  });

  it("times out a silent origin with 502 without poisoning the next pull", async () => {
    origin.silent.add(originPath);
    const started = Date.now();
    const silent = await route.handle(get(`/proxy/${versionPath}`));
    expect(silent.status).toBe(502);
    expect((await bodyOf(silent)).toString()).toContain("no response within 300 ms");
    expect(Date.now() - started).toBeLessThan(1_500);

    origin.silent.delete(originPath);
    const next = await route.handle(get(`/proxy/${versionPath}`));
    expect(sha256(await bodyOf(next))).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(2);
  });

  it("fails a body that stalls past the total timeout, and does not cache it", async () => {
    await route.stop();
    route = new ProxyRoute(telemetry, logger, { totalTimeoutMs: 400 });
    route.setSource({ type: "remote_passthrough", origin: origin.url() });
    origin.held.add(originPath);
    const stalled = await route.handle(get(`/proxy/${versionPath}`));
    expect(stalled.status).toBe(200);
    await expect(bodyOf(stalled)).rejects.toThrow(/longer than 400 ms/);
    origin.release();

    origin.held.delete(originPath);
    const next = await route.handle(get(`/proxy/${versionPath}`));
    expect(sha256(await bodyOf(next))).toBe(sha256(wasm));
    expect(origin.count(originPath)).toBe(2);
  });

  it("evicts the least recently used module when the cache is full", async () => {
    await route.stop();
    const a = randomBytes(1000);
    const b = randomBytes(1000);
    origin.files.set("/s3/leakproxy/a.wasm", a);
    origin.files.set("/s3/leakproxy/b.wasm", b);
    route = new ProxyRoute(telemetry, logger, { cacheMaxBytes: 1500 });
    route.setSource({ type: "remote_passthrough", origin: origin.url() });
    const pull = async (name: string) => bodyOf(await route.handle(get(`/proxy/${name}`)));

    expect(await pull("a.wasm")).toEqual(a);
    expect(await pull("a.wasm")).toEqual(a);
    expect(origin.count("/s3/leakproxy/a.wasm")).toBe(1);
    expect(await pull("b.wasm")).toEqual(b);
    expect(await pull("b.wasm")).toEqual(b);
    expect(origin.count("/s3/leakproxy/b.wasm")).toBe(1);
    expect(await pull("a.wasm")).toEqual(a);
    expect(origin.count("/s3/leakproxy/a.wasm")).toBe(2);
  });

  it("refuses traversal before asking the origin", async () => {
    for (const attempt of ["/proxy/../secret", "/proxy/%2e%2e/secret", "/proxy/a%2f..%2f..%2fsecret", "/proxy//etc"]) {
      expect((await route.handle(get(attempt))).status, attempt).toBe(400);
    }
    expect(origin.hits.size).toBe(0);
    expect(new Set(telemetry.pulled)).toEqual(new Set(["invalid"]));
  });

  it("switches source on the next request after setSource", async () => {
    const dir = await mkdtemp(path.join(tmpdir(), "leakagent-bundle-"));
    try {
      const bundled = Buffer.from("the bundled module");
      await writeFile(path.join(dir, "leaksignal.wasm"), bundled);
      origin.files.set("/s3/leakproxy/leaksignal.wasm", wasm);
      const pull = async () => bodyOf(await route.handle(get("/proxy/leaksignal.wasm")));

      expect(sha256(await pull())).toBe(sha256(wasm));
      route.setSource({ type: "bundled", path: dir });
      expect(await pull()).toEqual(bundled);
      route.setSource({ type: "remote_passthrough", origin: origin.url() });
      expect(sha256(await pull())).toBe(sha256(wasm));
      route.setSource(undefined);
      expect((await route.handle(get("/proxy/leaksignal.wasm"))).status).toBe(404);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
