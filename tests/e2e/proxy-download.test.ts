import { createHash, randomBytes } from "node:crypto";
import { mkdir, mkdtemp, rm, symlink, writeFile } from "node:fs/promises";
import http from "node:http";
import { type ClientHttp2Session, connect as connectH2, type IncomingHttpHeaders } from "node:http2";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { grpcFrame } from "../../scripts/reliability/wire";
import { UpdatePolicyRequest, UpdatePolicyResponse } from "../../src/generated/leaksignal";
import { AgentProcess, type LogLine } from "../support/agent-process";
import { parseExposition, seriesKey } from "../support/exposition";
import { grpcHeaders } from "../support/raw-h2";

const VERSION = "2025_01_29_19_26_57_6243534_0.12.4";
const MODULE = `${VERSION}/leaksignal.wasm`;
/** What Envoy's http_uri fetch sends besides the path: the URI's host as authority, and its router's headers. */
const ENVOY_AUTHORITY = "ingestion.leakagent.svc.cluster.local:8121";
const ENVOY_HEADERS = {
  "x-envoy-expected-rq-timeout-ms": "10000",
  "x-envoy-internal": "true",
  "x-forwarded-proto": "http",
  "x-request-id": "0f6a3c5e-8c1e-4d0b-9a53-2f4f2d9c1b7e",
};

const sha256 = (bytes: Buffer) => createHash("sha256").update(bytes).digest("hex");

/** Bytes that start like a Wasm module, then random: large enough to take several reads and frames. */
const wasmOf = (size: number) => Buffer.concat([Buffer.from("\0asm\x01\0\0\0", "latin1"), randomBytes(size - 8)]);

const POLICY = `policies:\n  shop:\n    report_style: raw\n`;
const configWith = (proxySource: string) => `${POLICY}${proxySource}`;
const bundled = (path: string) => `proxy_source:\n  type: bundled\n  path: ${JSON.stringify(path)}\n`;
const remote = (origin: string) => `proxy_source:\n  type: remote_passthrough\n  origin: ${JSON.stringify(origin)}\n`;

interface Download {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
}

/** An HTTP/1.1 request as Envoy sends it; the path goes out byte for byte, unnormalized. */
function http1(
  port: number,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Download> {
  return new Promise((done, reject) => {
    const request = http.request(
      {
        host: "127.0.0.1",
        port,
        path,
        method: options.method ?? "GET",
        headers: { host: ENVOY_AUTHORITY, ...ENVOY_HEADERS, ...options.headers },
        agent: false,
      },
      (response) => {
        const chunks: Buffer[] = [];
        response.on("data", (chunk: Buffer) => chunks.push(chunk));
        response.on("end", () =>
          done({ status: response.statusCode ?? 0, headers: response.headers, body: Buffer.concat(chunks) }),
        );
        response.on("error", reject);
      },
    );
    request.on("error", reject);
    request.end();
  });
}

/** An h2c session with prior knowledge, as Envoy's `leaksignal_infra` cluster opens it. */
function h2c(port: number): ClientHttp2Session {
  const session = connectH2(`http://127.0.0.1:${port}`);
  session.on("error", () => {});
  return session;
}

/** One request on an HTTP/2 session: a GET under Envoy's authority, or anything else given in `headers`. */
function http2(
  session: ClientHttp2Session,
  path: string,
  options: { method?: string; headers?: Record<string, string> } = {},
): Promise<Download> {
  return new Promise((done, reject) => {
    const stream = session.request({
      ":method": options.method ?? "GET",
      ":path": path,
      ":authority": ENVOY_AUTHORITY,
      ":scheme": "http",
      ...ENVOY_HEADERS,
      ...options.headers,
    });
    let headers: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on("response", (received) => {
      headers = received;
    });
    stream.on("data", (chunk: Buffer) => chunks.push(chunk));
    stream.on("end", () => done({ status: Number(headers[":status"]), headers, body: Buffer.concat(chunks) }));
    stream.on("error", reject);
  });
}

async function metricsOf(agent: AgentProcess) {
  return parseExposition(await agent.metrics()).samples;
}
const pulls = (samples: Map<string, number>, key: string) =>
  samples.get(seriesKey("leakagent_proxy_pull", { key })) ?? 0;

function expectModule(download: Download, module: Buffer): void {
  expect(download.status).toBe(200);
  expect(download.headers["content-type"]).toBe("application/wasm");
  expect(Number(download.headers["content-length"])).toBe(module.length);
  expect(sha256(download.body)).toBe(sha256(module));
}

/** A stand-in for LeakSignal's public module location: serves files under a path prefix and records requests. */
class Origin {
  readonly files = new Map<string, Buffer>();
  readonly requests: Array<{ path: string; headers: http.IncomingHttpHeaders }> = [];
  /** Paths whose requests get no answer at all. */
  readonly silent = new Set<string>();
  /** Paths answered with headers and half the body, then nothing. */
  readonly stalled = new Set<string>();
  private server: http.Server | undefined;
  port = 0;

  async start(port = 0): Promise<void> {
    const server = http.createServer((request, response) => {
      const path = request.url ?? "";
      this.requests.push({ path, headers: request.headers });
      if (this.silent.has(path)) return;
      const body = this.files.get(path);
      if (!body) {
        response.writeHead(404, { "content-type": "text/plain" }).end("no such object\n");
        return;
      }
      response.writeHead(200, {
        "content-type": "application/wasm",
        "content-length": body.length,
        etag: `"${sha256(body).slice(0, 32)}"`,
      });
      if (this.stalled.has(path)) response.write(body.subarray(0, body.length / 2));
      else response.end(body);
    });
    await new Promise<void>((resolve, reject) => {
      server.once("error", reject);
      server.listen(port, "127.0.0.1", resolve);
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

  get url(): string {
    return `http://127.0.0.1:${this.port}/s3/leakproxy`;
  }

  hits(path: string): number {
    return this.requests.filter((request) => request.path === `/s3/leakproxy/${path}`).length;
  }

  serve(path: string, body: Buffer): void {
    this.files.set(`/s3/leakproxy/${path}`, body);
  }
}

describe("the bundled proxy source, through the real agent", () => {
  let root: string;
  let bundle: string;
  const module = wasmOf(1_500_000);
  const secret = Buffer.from("outside the bundle: never served\n");
  let agent: AgentProcess;

  beforeAll(async () => {
    root = await mkdtemp(join(tmpdir(), "leakagent-bundle-"));
    bundle = join(root, "bundle");
    await mkdir(join(bundle, VERSION), { recursive: true });
    await writeFile(join(bundle, MODULE), module);
    await mkdir(join(root, "outside"));
    await writeFile(join(root, "outside", "secret.wasm"), secret);
    await symlink(join(root, "outside", "secret.wasm"), join(bundle, VERSION, "escape.wasm"));
    agent = await AgentProcess.serving({ config: configWith(bundled(bundle)) });
  });

  afterAll(async () => {
    await agent?.stop();
    await rm(root, { recursive: true, force: true });
  });

  it("serves the module over HTTP/1.1 with its sha256 as a strong ETag, and 304 for it", async () => {
    const download = await http1(agent.ingestionPort, `/proxy/${MODULE}`);
    expectModule(download, module);
    expect(download.headers.etag).toBe(`"${sha256(module)}"`);

    const unchanged = await http1(agent.ingestionPort, `/proxy/${MODULE}`, {
      headers: { "if-none-match": `"${sha256(module)}"` },
    });
    expect(unchanged.status).toBe(304);
    expect(unchanged.body).toHaveLength(0);
  });

  it("serves the module over h2c, and HEAD with the headers only", async () => {
    const session = h2c(agent.ingestionPort);
    try {
      const download = await http2(session, `/proxy/${MODULE}`);
      expectModule(download, module);
      expect(download.headers.etag).toBe(`"${sha256(module)}"`);

      const head = await http2(session, `/proxy/${MODULE}`, { method: "HEAD" });
      expect(head.status).toBe(200);
      expect(Number(head.headers["content-length"])).toBe(module.length);
      expect(head.body).toHaveLength(0);
      const head1 = await http1(agent.ingestionPort, `/proxy/${MODULE}`, { method: "HEAD" });
      expect(head1.status).toBe(200);
      expect(head1.headers.etag).toBe(`"${sha256(module)}"`);
      expect(head1.body).toHaveLength(0);
    } finally {
      session.close();
    }
  });

  it("serves the module on the same h2c connection as open gRPC calls", async () => {
    const session = h2c(agent.ingestionPort);
    try {
      // The proxy's policy stream stays open while Envoy fetches the module through the same cluster.
      const policyStream = session.request(grpcHeaders("UpdatePolicy"), { endStream: false });
      const policy = new Promise<UpdatePolicyResponse>((done, reject) => {
        let received = Buffer.alloc(0);
        policyStream.on("data", (chunk: Buffer) => {
          received = Buffer.concat([received, chunk]);
          const length = received.length >= 5 ? received.readUInt32BE(1) : Number.POSITIVE_INFINITY;
          if (received.length >= 5 + length) done(UpdatePolicyResponse.decode(received.subarray(5, 5 + length)));
        });
        policyStream.on("error", reject);
      });
      policyStream.write(
        grpcFrame(
          UpdatePolicyRequest.encode({ apiKey: "shop", deploymentName: "", commit: "e2e", semver: "1.0.0" }).finish(),
        ),
      );
      expect((await policy).policy?.policy).toContain("report_style: raw");

      const health = session.request(grpcHeaders("HealthCheck"), { endStream: false });
      const healthStatus = new Promise<string | undefined>((done, reject) => {
        let status: string | undefined;
        health.on("response", (headers) => {
          status ??= headers["grpc-status"] as string | undefined;
        });
        health.on("trailers", (trailers) => {
          status = trailers["grpc-status"] as string | undefined;
        });
        health.on("data", () => {});
        health.on("end", () => done(status));
        health.on("error", reject);
      });
      // The module download runs while the HealthCheck call is still waiting for its request to end.
      const download = await http2(session, `/proxy/${MODULE}`);
      health.end(grpcFrame(new Uint8Array(0)));
      expectModule(download, module);
      expect(await healthStatus).toBe("0");
      expect(policyStream.closed).toBe(false);
      policyStream.close();
    } finally {
      session.close();
    }
  });

  it("refuses traversal through the real server, without ever sending a byte from outside", async () => {
    const attempts = [
      `/proxy/../${VERSION}/leaksignal.wasm`,
      "/proxy/%2e%2e/outside/secret.wasm",
      `/proxy/${VERSION}/..%2f..%2foutside%2fsecret.wasm`,
      "/proxy/..%5coutside%5csecret.wasm",
      `/proxy/${VERSION}/leaksignal.wasm%00.txt`,
      "/proxy//etc/passwd",
      "/proxy/%252e%252e/outside/secret.wasm",
      `/proxy/${VERSION}/escape.wasm`,
    ];
    const session = h2c(agent.ingestionPort);
    try {
      for (const path of attempts) {
        for (const download of [await http1(agent.ingestionPort, path), await http2(session, path)]) {
          expect([400, 404], path).toContain(download.status);
          expect(download.body.includes(secret), path).toBe(false);
          expect(download.body.length, path).toBeLessThan(100);
        }
      }
    } finally {
      session.close();
    }
  });

  it("counts pulls by module path, and everything else under fixed keys", async () => {
    const before = await metricsOf(agent);
    await http1(agent.ingestionPort, `/proxy/${MODULE}`);
    await http1(agent.ingestionPort, `/proxy/${MODULE}`, { method: "HEAD" });
    await http1(agent.ingestionPort, `/proxy/${MODULE}`, { headers: { "if-none-match": `"${sha256(module)}"` } });
    await http1(agent.ingestionPort, "/proxy/%2e%2e/outside/secret.wasm");
    await http1(agent.ingestionPort, `/proxy/${VERSION}/escape.wasm`);
    await http1(agent.ingestionPort, "/proxy/no-such-version/leaksignal.wasm");
    const after = await metricsOf(agent);
    expect(pulls(after, MODULE) - pulls(before, MODULE)).toBe(3);
    expect(pulls(after, "invalid") - pulls(before, "invalid")).toBe(2);
    expect(pulls(after, "not_found") - pulls(before, "not_found")).toBe(1);
    const keys = [...after.keys()].filter((series) => series.startsWith("leakagent_proxy_pull{"));
    expect(keys.sort()).toEqual(
      [MODULE, "invalid", "not_found"].map((key) => seriesKey("leakagent_proxy_pull", { key })).sort(),
    );
  });
});

describe("LS_BUNDLE_DIR without proxy_source", () => {
  it("serves the bundle directory", async () => {
    const bundle = await mkdtemp(join(tmpdir(), "leakagent-bundle-env-"));
    const module = wasmOf(64 * 1024);
    await mkdir(join(bundle, VERSION));
    await writeFile(join(bundle, MODULE), module);
    const agent = await AgentProcess.serving({ config: POLICY, env: { LS_BUNDLE_DIR: bundle } });
    try {
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), module);
      expect(agent.logs.find((line) => line.message.startsWith("configuration loaded"))?.proxy_source).toBe("bundled");
    } finally {
      await agent.stop();
      await rm(bundle, { recursive: true, force: true });
    }
  });
});

describe("the remote_passthrough proxy source, through the real agent", () => {
  const origin = new Origin();
  const module = wasmOf(3 * 1024 * 1024);
  let agent: AgentProcess;

  beforeAll(async () => {
    await origin.start();
    origin.serve(MODULE, module);
    agent = await AgentProcess.serving({ config: configWith(remote(origin.url)) });
  });

  afterAll(async () => {
    await agent?.stop();
    await origin.stop();
  });

  it("passes a multi-megabyte module through over HTTP/1.1 and h2c, asking the origin once", async () => {
    expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), module);
    const session = h2c(agent.ingestionPort);
    try {
      const download = await http2(session, `/proxy/${MODULE}`);
      expectModule(download, module);
      const etag = String(download.headers.etag);
      expect(etag).toBe(`"${sha256(module).slice(0, 32)}"`);
      const unchanged = await http2(session, `/proxy/${MODULE}`, { headers: { "if-none-match": etag } });
      expect(unchanged.status).toBe(304);
      const head = await http2(session, `/proxy/${MODULE}`, { method: "HEAD" });
      expect(Number(head.headers["content-length"])).toBe(module.length);
      expect(head.body).toHaveLength(0);
    } finally {
      session.close();
    }
    expect(origin.hits(MODULE)).toBe(1);
    // The agent's own request: the origin's host, none of Envoy's headers.
    const [asked] = origin.requests;
    expect(asked?.headers.host).toBe(`127.0.0.1:${origin.port}`);
    expect(Object.keys(asked?.headers ?? {}).filter((name) => name.startsWith("x-envoy-"))).toEqual([]);
    const samples = await metricsOf(agent);
    expect(pulls(samples, MODULE)).toBe(4);
  });

  it("sends one origin request for 50 proxies pulling a new version at once", async () => {
    const next = "2025_02_01_00_00_00_0000000_0.12.5/leaksignal.wasm";
    const nextModule = wasmOf(2 * 1024 * 1024);
    origin.serve(next, nextModule);
    const downloads = await Promise.all(Array.from({ length: 50 }, () => http1(agent.ingestionPort, `/proxy/${next}`)));
    for (const download of downloads) expectModule(download, nextModule);
    expect(origin.hits(next)).toBe(1);
  });

  it("answers 502 while the origin is down, keeps serving, and recovers when it is back", async () => {
    const missing = "2025_03_01_00_00_00_0000000_0.12.6/leaksignal.wasm";
    const later = wasmOf(100_000);
    origin.serve(missing, later);
    const port = origin.port;
    await origin.stop();
    try {
      const failed = agent.nextLog((line: LogLine) => line.message === "proxy origin download failed");
      const down = await http1(agent.ingestionPort, `/proxy/${missing}`);
      expect(down.status).toBe(502);
      expect(down.body.toString()).toBe(
        `Bad gateway: fetching http://127.0.0.1:${port}/s3/leakproxy/${missing} failed: cannot reach the origin (ECONNREFUSED).\n`,
      );
      expect((await failed).url).toBe(`http://127.0.0.1:${port}/s3/leakproxy/${missing}`);
      // What is cached is still served while the origin is away.
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), module);
      expect(pulls(await metricsOf(agent), "unavailable")).toBe(1);
    } finally {
      await origin.start(port);
    }
    expectModule(await http1(agent.ingestionPort, `/proxy/${missing}`), later);
  });

  it("passes an origin 404 through", async () => {
    const download = await http1(agent.ingestionPort, "/proxy/no-such-version/leaksignal.wasm");
    expect(download.status).toBe(404);
    expect(download.body.toString()).toBe("no such object\n");
  });
});

describe("a hot reload switching proxy_source", () => {
  it("applies to the next download", async () => {
    const bundle = await mkdtemp(join(tmpdir(), "leakagent-bundle-switch-"));
    const fromBundle = wasmOf(200_000);
    await mkdir(join(bundle, VERSION));
    await writeFile(join(bundle, MODULE), fromBundle);
    const origin = new Origin();
    await origin.start();
    const fromOrigin = wasmOf(300_000);
    origin.serve(MODULE, fromOrigin);
    const agent = await AgentProcess.serving({ config: configWith(bundled(bundle)) });
    const switchTo = async (config: string) => {
      const reloaded = agent.nextLog((line) => line.message.startsWith("configuration reloaded"));
      await writeFile(agent.configPath ?? "", config);
      await reloaded;
    };
    try {
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), fromBundle);

      await switchTo(configWith(remote(origin.url)));
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), fromOrigin);
      expect(origin.hits(MODULE)).toBe(1);

      await switchTo(POLICY);
      const none = await http1(agent.ingestionPort, `/proxy/${MODULE}`);
      expect(none.status).toBe(404);
      expect(none.body.toString()).toBe("Not found: no proxy_source is configured on this agent.\n");

      await switchTo(configWith(bundled(bundle)));
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), fromBundle);
    } finally {
      await agent.stop();
      await origin.stop();
      await rm(bundle, { recursive: true, force: true });
    }
  });
});

describe("proxy source settings (LS_PROXY_*)", () => {
  it("applies the origin timeouts and the cache size from the environment", async () => {
    const origin = new Origin();
    await origin.start();
    const module = wasmOf(50_000);
    origin.serve(MODULE, module);
    origin.silent.add("/s3/leakproxy/silent/leaksignal.wasm");
    origin.serve("stalled/leaksignal.wasm", module);
    origin.stalled.add("/s3/leakproxy/stalled/leaksignal.wasm");
    const agent = await AgentProcess.serving({
      config: configWith(remote(origin.url)),
      env: {
        LS_PROXY_CACHE_MAX_BYTES: "0",
        LS_PROXY_ORIGIN_HEADERS_TIMEOUT_MS: "300",
        LS_PROXY_ORIGIN_TIMEOUT_MS: "800",
      },
    });
    try {
      const started = Date.now();
      const silent = await http1(agent.ingestionPort, "/proxy/silent/leaksignal.wasm");
      const waited = Date.now() - started;
      expect(silent.status).toBe(502);
      expect(silent.body.toString()).toContain("failed: no response within 300 ms");
      expect(waited).toBeGreaterThanOrEqual(290);
      expect(waited).toBeLessThan(5000);

      // Nothing is kept with a cache of 0 bytes: every pull goes to the origin.
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), module);
      expectModule(await http1(agent.ingestionPort, `/proxy/${MODULE}`), module);
      expect(origin.hits(MODULE)).toBe(2);

      // A body that stops arriving is cut off once the whole download has taken too long: Envoy sees a short body.
      const cutAt = Date.now();
      await expect(http1(agent.ingestionPort, "/proxy/stalled/leaksignal.wasm")).rejects.toThrow();
      expect(Date.now() - cutAt).toBeGreaterThanOrEqual(790);
      expect(Date.now() - cutAt).toBeLessThan(5000);
    } finally {
      await agent.stop();
      await origin.stop();
    }
  });

  it.each([
    ["LS_PROXY_CACHE_MAX_BYTES", "256MiB", "a whole number of bytes (0 or more)"],
    ["LS_PROXY_ORIGIN_HEADERS_TIMEOUT_MS", "0", "a positive whole number of milliseconds"],
    ["LS_PROXY_ORIGIN_TIMEOUT_MS", "2m", "a positive whole number of milliseconds"],
  ])("refuses %s=%s with exit 2", async (name, value, expected) => {
    const agent = AgentProcess.start({ config: POLICY, env: { [name]: value } });
    expect((await agent.exited).code).toBe(2);
    expect(agent.stderr).toEqual([`leakagent: ${name}="${value}" is not ${expected}`]);
  });
});
